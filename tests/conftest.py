"""Shared fixtures: fresh random inputs, and the array kinds every kernel test runs on."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
import torch

from activerm_fast._launch import gpu_usable

ARRAY_KINDS = ["numpy", "torch-cpu", "torch-cuda"]


@pytest.fixture
def rng() -> np.random.Generator:
    """A generator with a fresh seed, printed so a failure can be replayed."""
    seed = secrets.randbits(32)
    print(f"random seed: {seed}")
    return np.random.default_rng(seed)


@pytest.fixture(params=ARRAY_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """NumPy arrays, CPU tensors and (when a GPU is usable) CUDA tensors."""
    if request.param == "torch-cuda" and not gpu_usable():
        pytest.skip("CUDA backend not built or no GPU visible: CUDA variant not run")
    return request.param


def as_kind(x: np.ndarray, kind: str):
    """The same data as the array kind under test."""
    if kind == "numpy":
        return x
    return torch.from_numpy(np.ascontiguousarray(x)).to("cuda" if kind == "torch-cuda" else "cpu")


def to_numpy(x) -> np.ndarray:
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def random_pairs(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """``count`` distinct unordered pairs of n responses, in random orientation and order."""
    i, j = np.triu_indices(n, k=1)
    keep = rng.choice(len(i), size=count, replace=False)
    pairs = np.stack([i[keep], j[keep]], axis=1)
    flip = rng.random(count) < 0.5
    pairs[flip] = pairs[flip][:, ::-1]
    return pairs.astype(np.int64)


def spd(rng: np.random.Generator, d: int) -> np.ndarray:
    """A random symmetric positive definite (d, d) matrix, eigenvalues at least 0.5."""
    root = rng.normal(size=(d, d))
    return root @ root.T / d + 0.5 * np.eye(d)


def relative_error(got, want) -> float:
    got, want = to_numpy(got).astype(np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    if want.size == 0:
        return 0.0
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-300))
