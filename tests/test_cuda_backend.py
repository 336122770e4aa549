"""The CUDA backend against the CPU backend and the float64 references (needs a GPU).

The CUDA kernels do the CPU's arithmetic in the CPU's order with FMA contraction off, so pair
differences, quadratic forms and the whole greedy loop (scores, the factor S of F^-1, choices)
agree bit for bit, ties included. Two things round differently: the device exp/log1p (fisher weights and
gains, within an ulp or two) and the Laplacian scatter (atomic adds in no fixed order).
Most tests call the launch layer (`_launch`) directly, below validation, the way the public
functions do.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import activerm_fast as arm
from activerm_fast.testing import launch as _launch
from activerm_fast.testing import reference as ref

from conftest import random_pairs, relative_error, spd

if not torch.cuda.is_available():
    pytest.skip("no CUDA device visible to torch: CUDA backend not tested", allow_module_level=True)
_cuda = pytest.importorskip(
    "activerm_fast._cuda", reason="activerm_fast was built without the CUDA backend"
)

CUDA = torch.device("cuda")
FLOAT_DTYPES = [np.float32, np.float64]
INDEX_DTYPES = [np.int32, np.int64]
BITS = "CUDA differs from the CPU backend (FMA contraction or another summation order?)"


def raw_pair_diff(f: torch.Tensor, p: torch.Tensor) -> np.ndarray:
    return _launch.pair_diff(f, p).cpu().numpy()


def raw_quadform(f, p, projected=None, scale=1.0) -> torch.Tensor:
    return _launch.pair_quadform(f, p, projected, scale)


def raw_weights(rewards: torch.Tensor, p: torch.Tensor) -> np.ndarray:
    return _launch.fisher_weights(rewards, p).cpu().numpy()


def raw_laplacian(f, p, w=None) -> np.ndarray:
    return _launch.fisher_matrix(f, p, w).cpu().numpy()


def launch_greedy(f, p, w, scores, factor, k) -> dict[str, torch.Tensor]:
    """Enqueue the greedy engine on the current stream; returns its outputs and state."""
    state = {"scores": scores.clone()[:, None], "factor": factor.clone()[None]}
    engine = _launch.GreedyEngine(f[None], p, w[:, None].contiguous(), **state, feature_scale=1.0)
    state["chosen"], state["gains"] = engine.run(k)
    state["engine"] = engine  # keeps the workspace alive until the stream reaches it
    return state


def raw_greedy(f, p, w, scores, factor, k) -> dict[str, np.ndarray]:
    state = launch_greedy(f, p, w, scores, factor, k)
    del state["engine"]
    return {name: t.cpu().numpy() for name, t in state.items()}


def both(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t, t.to(CUDA)


def test_module_reports_the_gpu():
    assert _cuda.backend == "cuda"
    assert _cuda.device_count() == torch.cuda.device_count() > 0
    assert _cuda.driver_version() > 0 and _cuda.runtime_version() > 0
    assert arm.build_info()["gpu_usable"]


# (n, d, P): single pair, d > n, a d that is no multiple of a tile, several pair blocks, and
# n = 20,000 x d = 300, where pair_quadform splits the columns over launches to stay in L2
KERNEL_SHAPES = [(2, 1, 1), (6, 40, 10), (50, 37, 3000), (500, 64, 70_000), (20_000, 300, 5_000)]


@pytest.mark.parametrize("shape", KERNEL_SHAPES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_pair_kernels_match_cpu_bit_for_bit(rng, shape, dtype, index_dtype):
    n, d, count = shape
    f_cpu, f_gpu = both(rng.normal(size=(n, d)).astype(dtype))
    # raw kernels accept repeats and self-pairs (zero difference)
    p_cpu, p_gpu = both(rng.integers(0, n, size=(count, 2)).astype(index_dtype))
    g_cpu, g_gpu = both(rng.normal(size=(n, d)))

    np.testing.assert_array_equal(raw_pair_diff(f_gpu, p_gpu), raw_pair_diff(f_cpu, p_cpu), BITS)
    for projected, scale in [((None, None), 0.37), ((g_cpu, g_gpu), 1.0)]:
        got = raw_quadform(f_gpu, p_gpu, projected[1], scale).cpu().numpy()
        want = raw_quadform(f_cpu, p_cpu, projected[0], scale).numpy()
        np.testing.assert_array_equal(got, want, BITS)

    r_cpu, r_gpu = both(rng.normal(scale=3.0, size=(3, n)))
    for rewards in [(r_cpu, r_gpu), (r_cpu.float(), r_gpu.float())]:
        np.testing.assert_allclose(
            raw_weights(rewards[1], p_gpu), raw_weights(rewards[0], p_cpu), rtol=1e-14, atol=0
        )

    w_cpu, w_gpu = both(rng.uniform(0.0, 0.25, size=count))
    for weights in [(None, None), (w_cpu, w_gpu)]:
        got = raw_laplacian(f_gpu, p_gpu, weights[1])
        assert relative_error(got, raw_laplacian(f_cpu, p_cpu, weights[0])) <= 1e-12


def test_public_kernels_on_cuda_match_the_references(rng):
    features = rng.normal(size=(300, 24))
    pairs = random_pairs(rng, 300, 5000)
    weights = rng.uniform(0.0, 0.25, size=5000)
    precision = spd(rng, 24)
    f, p, w = (torch.from_numpy(x).to(CUDA) for x in (features, pairs, weights))
    assert arm.pair_diff(f, p).is_cuda
    assert relative_error(arm.pair_diff(f, p), ref.pair_diff(features, pairs)) == 0
    got = arm.pair_quadform(f, p, torch.from_numpy(precision).to(CUDA))
    assert relative_error(got, ref.pair_quadform(features, pairs, precision)) <= 1e-12
    got = arm.fisher_matrix(f, p, w)
    assert relative_error(got, ref.fisher_matrix(features, pairs, weights)) <= 1e-12


def greedy_inputs(rng, n, d, count, dtype, index_dtype, matrix_prior):
    """CPU and CUDA copies of one greedy problem (features, pairs, weights, starting scores and
    factor S0 with S0 S0^T = F0^-1), its starting scores computed by each backend."""
    f_cpu, f_gpu = both(rng.normal(size=(n, d)).astype(dtype))
    # repeated pairs tie exactly
    p_cpu, p_gpu = both(rng.integers(0, n, size=(count, 2)).astype(index_dtype))
    w_cpu, w_gpu = both(rng.uniform(0.01, 0.25, size=count))
    if matrix_prior:
        factor = np.linalg.inv(np.linalg.cholesky(spd(rng, d))).T
        s_cpu, s_gpu = both(factor)
        g_cpu, g_gpu = both(f_cpu.double().numpy() @ factor)
        q_cpu, q_gpu = raw_quadform(g_cpu, p_cpu), raw_quadform(g_gpu, p_gpu)
    else:
        ridge = 0.3
        s_cpu, s_gpu = both(np.eye(d) / np.sqrt(ridge))
        q_cpu = raw_quadform(f_cpu, p_cpu, None, 1.0 / ridge)
        q_gpu = raw_quadform(f_gpu, p_gpu, None, 1.0 / ridge)
    np.testing.assert_array_equal(q_gpu.cpu().numpy(), q_cpu.numpy(), BITS)
    return (f_cpu, p_cpu, w_cpu, q_cpu, s_cpu), (f_gpu, p_gpu, w_gpu, q_gpu, s_gpu)


def assert_greedy_states_equal(got: dict, want: dict):
    np.testing.assert_array_equal(got["chosen"], want["chosen"], "chosen pairs: " + BITS)
    np.testing.assert_allclose(got["gains"], want["gains"], rtol=1e-14, atol=0)  # device log1p
    for name in ("scores", "factor"):
        np.testing.assert_array_equal(got[name], want[name], f"{name}: {BITS}")


# (n, d, P, k): one pair, d > n, d over one 1024-column tile of the direction kernel, and P over
# several grid-stride passes of the sweep
GREEDY_SHAPES = [
    (2, 1, 1, 1),
    (40, 7, 500, 12),
    (30, 90, 400, 20),
    (300, 64, 20_000, 40),
    (60, 1100, 900, 6),
    (3000, 16, 1_500_000, 8),
]


@pytest.mark.parametrize("shape", GREEDY_SHAPES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_greedy_matches_cpu_bit_for_bit(rng, shape, dtype, index_dtype):
    n, d, count, k = shape
    cpu, gpu = greedy_inputs(rng, n, d, count, dtype, index_dtype, matrix_prior=False)
    want = raw_greedy(*cpu, k)
    got = raw_greedy(*gpu, k)
    assert_greedy_states_equal(got, want)
    assert len(set(got["chosen"].tolist())) == k and got["chosen"].min() >= 0


@pytest.mark.parametrize("shape", GREEDY_SHAPES[1:5])
def test_greedy_with_matrix_prior_matches_cpu_bit_for_bit(rng, shape):
    n, d, count, k = shape
    cpu, gpu = greedy_inputs(rng, n, d, count, np.float32, np.int64, matrix_prior=True)
    assert_greedy_states_equal(raw_greedy(*gpu, k), raw_greedy(*cpu, k))


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_greedy_on_unaligned_pairs(rng, index_dtype):
    """Pairs that are not 2-index aligned take the scalar-load path and choose the same."""
    _, (f, p, w, q, factor) = greedy_inputs(rng, 200, 12, 30_000, np.float32, index_dtype, False)
    storage = torch.empty(2 * p.shape[0] + 1, dtype=p.dtype, device=CUDA)
    shifted = storage[1:].view(p.shape)
    shifted.copy_(p)
    assert shifted.data_ptr() % (2 * shifted.element_size()) != 0
    assert_greedy_states_equal(
        raw_greedy(f, shifted, w, q, factor, 25), raw_greedy(f, p, w, q, factor, 25)
    )


def test_greedy_with_nothing_selectable_records_no_choice():
    """With every score masked the engine records -1 and reads nothing out of bounds, like the
    CPU engine (the Python layer turns it into a ValueError)."""
    for device in ("cpu", CUDA):
        f = torch.ones((5, 3), device=device)
        p = torch.tensor([[0, 1], [2, 3]], device=device)
        w = torch.ones(2, dtype=torch.float64, device=device)
        q = torch.full((2,), math.nan, dtype=torch.float64, device=device)
        factor = torch.eye(3, dtype=torch.float64, device=device)
        got = raw_greedy(f, p, w, q, factor, 3)
        np.testing.assert_array_equal(got["chosen"], [-1, -1, -1])
        assert np.isnan(got["gains"]).all()
        np.testing.assert_array_equal(got["factor"][0], np.eye(3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_public_greedy_agrees_with_cpu(rng, dtype):
    features = rng.normal(size=(400, 24)).astype(dtype)
    pairs = random_pairs(rng, 400, 20_000).astype(np.int32)
    weights = rng.uniform(0.01, 0.25, size=20_000)
    exclude = rng.random(20_000) < 0.2
    for prior in (1e-2, spd(rng, 24)):
        calls = {}
        for device in ("cpu", "cuda"):
            f, p, w, x = (
                torch.from_numpy(a).to(device) for a in (features, pairs, weights, exclude)
            )
            prior_arg = prior if np.ndim(prior) == 0 else torch.from_numpy(prior).to(device)
            calls[device] = arm.greedy_logdet(f, p, 50, weights=w, prior=prior_arg, exclude=x)
        got, want = calls["cuda"], calls["cpu"]
        assert got.indices.is_cuda and got.gains.is_cuda
        np.testing.assert_array_equal(got.indices.cpu().numpy(), want.indices.numpy())
        assert not exclude[got.indices.cpu().numpy()].any()
        # a matrix prior goes through torch matmuls, which round differently on the two devices
        rtol = 1e-13 if np.ndim(prior) == 0 else 1e-9
        np.testing.assert_allclose(got.gains.cpu().numpy(), want.gains.numpy(), rtol=rtol)
        assert got.logdet == pytest.approx(want.logdet, rel=rtol)


def test_public_greedy_breaks_exact_ties_like_cpu(rng):
    """Responses m..2m-1 are responses 0..m-1 shifted by 1 (exactly, small integers), so every
    pair (i, j) has a twin (m+i, m+j) with the same difference, weight and starting score. Only
    bit-identical arithmetic makes both backends resolve the same ties the same way."""
    m = 24
    base = rng.integers(-3, 4, size=(m, 6)).astype(np.float32)
    features = np.concatenate([base, base + 1.0])
    i, j = np.triu_indices(m, k=1)
    pairs = np.concatenate([np.stack([i, j], 1), np.stack([i + m, j + m], 1)]).astype(np.int64)
    cpu = arm.greedy_logdet(torch.from_numpy(features), torch.from_numpy(pairs), 60, prior=0.5)
    gpu = arm.greedy_logdet(
        torch.from_numpy(features).to(CUDA), torch.from_numpy(pairs).to(CUDA), 60, prior=0.5
    )
    np.testing.assert_array_equal(gpu.indices.cpu().numpy(), cpu.indices.numpy())
    assert cpu.indices[0] < len(i)  # the first choice tied with its twin: lowest index won
    np.testing.assert_allclose(gpu.gains.cpu().numpy(), cpu.gains.numpy(), rtol=1e-14)


def test_kernels_only_enqueue_work_on_the_callers_stream(rng):
    """Every call returns while its stream is still busy (no host synchronisation), and runs
    after the work queued before it on that stream (the inputs below are written there)."""
    if not hasattr(torch.cuda, "_sleep"):
        pytest.skip("torch.cuda._sleep is not available to hold the stream busy")
    _, (f, p, w, q, factor) = greedy_inputs(rng, 500, 32, 50_000, np.float32, np.int32, False)
    reference = raw_greedy(f, p, w, q, factor, 30)
    want_quadforms = q.cpu().numpy()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        scores = torch.full_like(q, math.nan)
        quadforms = torch.full_like(q, math.nan)
        torch.cuda._sleep(200_000_000)  # about 0.1 s of GPU clock ahead of everything below
        quadforms.copy_(q)
        out = raw_quadform(f, p, None, 1.0 / 0.3)
        scores.copy_(out)
        state = launch_greedy(f, p, w, quadforms, factor, 30)
        assert not side.query(), "a kernel call waited for its stream to finish"
    side.synchronize()
    np.testing.assert_array_equal(scores.cpu().numpy(), want_quadforms)
    got = {name: t.cpu().numpy() for name, t in state.items() if name != "engine"}
    assert_greedy_states_equal(got, reference)


def test_mixed_devices_are_rejected():
    features = torch.randn(10, 4, device=CUDA)
    pairs = torch.tensor([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="pairs is on cpu but features is on cuda"):
        arm.greedy_logdet(features, pairs, 1)
    with pytest.raises(ValueError, match="pairs is on cpu but features is on cuda"):
        arm.pair_quadform(features, pairs, torch.eye(4, device=CUDA))
    with pytest.raises(ValueError, match="weights is on cpu but features is on cuda"):
        arm.greedy_logdet(features, pairs.to(CUDA), 1, weights=torch.ones(2))


def test_offsets_past_2_31_elements(rng):
    """Rows beyond element 2^31 of the features: every offset is computed in 64 bits."""
    n, d = (1 << 21) + 64, 1024  # 2^31 + 65,536 float32 elements, 8.6 GB
    if torch.cuda.get_device_properties(CUDA).total_memory < 24 * 2**30:
        pytest.skip("needs 24 GiB of GPU memory")
    features = torch.empty((n, d), device=CUDA).normal_()
    last = torch.arange(n - 40, n, device=CUDA)
    local = rng.integers(0, 40, size=(300, 2))
    p_gpu = last[torch.from_numpy(local).to(CUDA)]
    f_cpu = features[n - 40 :].cpu()
    p_cpu = torch.from_numpy(local)
    np.testing.assert_array_equal(raw_pair_diff(features, p_gpu), raw_pair_diff(f_cpu, p_cpu))
    q_gpu = raw_quadform(features, p_gpu, None, 2.0)
    q_cpu = raw_quadform(f_cpu, p_cpu, None, 2.0)
    np.testing.assert_array_equal(q_gpu.cpu().numpy(), q_cpu.numpy())
    w_cpu, w_gpu = both(rng.uniform(0.01, 0.25, size=300))
    s_cpu, s_gpu = both(np.eye(d) * 2.0)
    got = raw_greedy(features, p_gpu, w_gpu, q_gpu, s_gpu, 3)
    want = raw_greedy(f_cpu, p_cpu, w_cpu, q_cpu, s_cpu, 3)
    np.testing.assert_array_equal(got["chosen"], want["chosen"])
    np.testing.assert_array_equal(got["scores"], want["scores"])
    np.testing.assert_array_equal(got["factor"], want["factor"])
