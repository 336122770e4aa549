"""Shared fixtures: fresh random inputs, and the array kinds every kernel test runs on."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
import torch

from activerm_fast import data
from activerm_fast.simulation.oracle import BTOracle
from activerm_fast.testing import gpu_usable

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


def gold_labelled(dataset, pairs: np.ndarray, name: str):
    """``dataset`` as a human-labelled one: ``pairs`` with noiseless labels of its gold."""
    return data.Dataset(
        name=name,
        embeddings=dataset.embeddings,
        prompt_ids=dataset.prompt_ids,
        pairs=pairs,
        labels=BTOracle(dataset.gold, beta=np.inf).label(pairs),
        is_test=dataset.is_test,
    )


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


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory):
    """One real Label Studio server on 127.0.0.1 for the whole session (tests/label_studio_server.py),
    stopped at the end. Without one the tests skip, except under CI=true, where they fail."""
    import os

    import label_studio_server

    def unavailable(reason: str):
        if os.environ.get("CI") == "true":
            pytest.fail(f"Label Studio is required in CI: {reason}")
        pytest.skip(reason)

    program = label_studio_server.executable()
    if program is None:
        unavailable(
            "label-studio is not installed (python3 -m venv build/label-studio && "
            "build/label-studio/bin/pip install label-studio -c .ci/label-studio-constraints.txt)"
        )
    try:
        server = label_studio_server.start(program, tmp_path_factory.mktemp("label-studio"))
    except (RuntimeError, OSError) as err:
        unavailable(f"cannot start {program}: {err}")
    print(f"Label Studio answered {server.url}/health after {server.started_in:.0f} s")
    yield server
    label_studio_server.stop(server)
