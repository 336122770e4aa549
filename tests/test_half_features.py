"""float16 and bfloat16 features: read as stored and widened exactly in the kernels, so every
kernel gives the bits float32 features holding the same values give (and so the float64
reference's answer to float32 precision), on the CPU and, where one is usable, the GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import activerm_fast as arm
from activerm_fast.testing import reference as ref

from conftest import random_pairs, relative_error

HALVES = [torch.float16, torch.bfloat16]
# (n responses, d features, P pairs): a single pair, d > n, and pools past the CPU kernels'
# groups of 8 pairs, the greedy engine's panels of 16 rows and the sweep's stages of 64 pairs
SHAPES = [(2, 1, 1), (6, 40, 10), (50, 8, 300), (203, 17, 3001)]


def devices() -> list[str]:
    return ["cpu", "cuda"] if arm.build_info()["gpu_usable"] else ["cpu"]


def half_features(
    rng: np.random.Generator, n: int, d: int, dtype: torch.dtype, *, largest: bool = True
) -> torch.Tensor:
    """Normal features rounded to ``dtype``, with its smallest and largest subnormal, a
    negative zero and (with ``largest``) its largest finite value placed among them."""
    f = torch.from_numpy(rng.normal(size=(n, d))).to(dtype)
    info = torch.finfo(dtype)
    specials = [info.tiny * info.eps, info.tiny * (1 - info.eps), -0.0, -info.tiny * info.eps]
    if largest:
        specials.append(info.max)
    flat = f.reshape(-1)
    at = rng.choice(flat.numel(), size=min(len(specials), flat.numel()), replace=False)
    flat[at] = torch.tensor(specials[: len(at)], dtype=dtype)
    return f


def as_float32(f: torch.Tensor) -> torch.Tensor:
    """The same values as float32 (exact: every half value is a float32)."""
    wide = f.float()
    assert torch.equal(wide.to(f.dtype).view(torch.int16), f.view(torch.int16))
    return wide


def same_outcome(call, half: torch.Tensor, single: torch.Tensor):
    """call(half) and call(single) return the same bits or raise the same error; the result."""
    try:
        want = call(single)
    except ValueError as err:
        with pytest.raises(ValueError, match=str(err)[:40].replace("(", r"\(")):
            call(half)
        return None
    got = call(half)
    for a, b in zip(*[x if isinstance(x, tuple) else (x,) for x in (got, want)], strict=True):
        if isinstance(a, float):
            assert a == b or (np.isnan(a) and np.isnan(b))
        else:
            assert a.dtype == b.dtype and torch.equal(a.view(torch.int8), b.view(torch.int8))
    return want


def test_the_special_values_are_subnormal_signed_and_largest():
    for dtype in HALVES:
        f = half_features(np.random.default_rng(0), 3, 3, dtype)
        wide = as_float32(f).reshape(-1)
        info = torch.finfo(dtype)
        assert wide.abs().max() == info.max
        positive = wide[wide != 0].abs()
        assert positive.min() < info.tiny  # subnormal
        assert bool(torch.signbit(wide[wide == 0]).any())


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", HALVES)
def test_every_finite_half_is_read_as_its_float32(device, dtype):
    """All 2^16 bit patterns but the non-finite ones, each read by a kernel (its difference with
    a zero row, which pair_diff forms in float32) as exactly its float32 value: normals,
    subnormals, both zeros and the largest finite."""
    values = torch.arange(1 << 16, dtype=torch.int32).to(torch.int16).view(dtype)
    values = values[torch.isfinite(values)]
    rows = torch.stack([values, torch.zeros_like(values)], dim=1).reshape(-1, 1).to(device)
    pairs = torch.arange(rows.shape[0], device=device).reshape(-1, 2)
    got = arm.pair_diff(rows, pairs)[:, 0]
    want = values.float().to(device)
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("shape", SHAPES)
def test_pair_kernels_equal_float32_bit_for_bit(rng, device, dtype, shape):
    n, d, count = shape
    # the largest bfloat16 squared overflows float32: both refuse it alike (same_outcome)
    f = half_features(rng, n, d, dtype).to(device)
    single = as_float32(f)
    pairs = torch.from_numpy(random_pairs(rng, n, count)).to(device)
    weights = torch.from_numpy(rng.random(count)).to(device)
    root = torch.from_numpy(rng.normal(size=(d, d))).to(device)
    precision = root @ root.T
    for index in (pairs, pairs.int()):
        same_outcome(lambda x, p=index: arm.pair_diff(x, p), f, single)
        same_outcome(lambda x, p=index: arm.pair_quadform(x, p, precision), f, single)
        same_outcome(lambda x, p=index: arm.fisher_matrix(x, p), f, single)
        same_outcome(lambda x, p=index: arm.fisher_matrix(x, p, weights), f, single)


@pytest.mark.parametrize("dtype", HALVES)
def test_pair_kernels_match_the_float64_reference(rng, dtype):
    f = half_features(rng, 60, 9, dtype, largest=False)
    values = f.double().numpy()
    pairs = random_pairs(rng, 60, 500)
    weights = rng.random(500)
    precision = np.eye(9) + 0.1
    got = arm.pair_diff(f, torch.from_numpy(pairs))
    assert got.dtype == torch.float32
    assert relative_error(got, ref.pair_diff(values, pairs)) <= 2e-7
    quad = arm.pair_quadform(f, torch.from_numpy(pairs), torch.from_numpy(precision))
    assert relative_error(quad, ref.pair_quadform(values, pairs, precision)) <= 1e-6
    matrix = arm.fisher_matrix(f, torch.from_numpy(pairs), torch.from_numpy(weights))
    assert relative_error(matrix, ref.fisher_matrix(values, pairs, weights)) <= 1e-6


def test_numpy_float16_features(rng):
    f = half_features(rng, 40, 5, torch.float16).numpy()
    assert f.dtype == np.float16
    pairs = random_pairs(rng, 40, 200)
    single = f.astype(np.float32)
    for call in (
        lambda x: arm.pair_quadform(x, pairs, np.eye(5)),
        lambda x: arm.fisher_matrix(x, pairs),
        lambda x: arm.greedy_logdet(x, pairs, 6).indices,
    ):
        got, want = call(f), call(single)
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("shape", SHAPES[1:])
def test_greedy_engine_equals_float32_bit_for_bit(rng, device, dtype, lazy, shape):
    if lazy and device != "cpu":
        pytest.skip("the lazy sweep runs on the CPU")
    n, d, count = shape
    f = half_features(rng, n, d, dtype).to(device)
    pairs = torch.from_numpy(random_pairs(rng, n, count)).to(device)
    weights = torch.from_numpy(rng.random(count)).to(device)
    k = min(count, 12)
    for prior in (1e-2, torch.eye(d, dtype=torch.float64, device=device) * 3.0):

        def run(x, prior=prior):
            batch = arm.greedy_logdet(x, pairs, k, weights=weights, prior=prior, lazy=lazy)
            return batch.indices, batch.gains, batch.logdet

        same_outcome(run, f, as_float32(f))


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("in_sweep", [False, True])
def test_implicit_pool_and_ensemble_equal_float32_bit_for_bit(rng, monkeypatch, dtype, in_sweep):
    from activerm_fast import _launch

    monkeypatch.setattr(_launch, "weights_in_sweep", lambda *args: in_sweep)
    n, d, members = 300, 12, 3
    ids = rng.integers(0, 40, size=n)
    pool = arm.ImplicitPool.cross_prompt(ids, 5000, seed=int(rng.integers(1 << 30)))
    f = half_features(rng, n, d, dtype)
    ensemble = torch.stack(
        [half_features(rng, n, d, dtype, largest=e == 0) for e in range(members)]
    )
    rewards = torch.from_numpy(rng.normal(size=(members, n)))
    for strategy, features in (("dopt-greedy", f), ("ensemble-dopt-greedy", ensemble)):

        def run(x, strategy=strategy):
            batch = arm.select(strategy, features=x, pairs=pool, k=8, rewards=rewards)
            return batch.indices, batch.gains, batch.logdet

        same_outcome(run, features, as_float32(features))


def test_half_features_are_validated():
    with pytest.raises(TypeError, match="float32, float64, float16 or bfloat16, got torch.int32"):
        arm.fisher_matrix(torch.ones((3, 2), dtype=torch.int32), np.array([[0, 1]]))
    for dtype in HALVES:
        for bad, text in ((float("nan"), "nan"), (float("inf"), "inf"), (-float("inf"), "-inf")):
            f = torch.ones((4, 3), dtype=dtype)
            f[2, 1] = bad
            with pytest.raises(
                ValueError, match=rf"features must be finite, got {text} at index \(2, 1\)"
            ):
                arm.pair_quadform(f, np.array([[0, 1]]), np.eye(3))
    # finite halves whose sum overflows float16 are finite
    many = torch.full((200, 4), 60000.0, dtype=torch.float16)
    assert arm.pair_diff(many, np.array([[0, 1]])).abs().max() == 0.0
