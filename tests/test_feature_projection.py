"""_launch.project_features: (scale Phi) M in float64 for features of every dtype, by the CPU
kernel (csrc/cpu/feature_projection_cpu.h) where it runs, else by torch's product.

The kernel's entries are the in-order float64 sums of the reference bit for bit, whatever the
shape (tails of rows and columns), the matrix's zero pattern (triangular, diagonal, zero
blocks: skipped terms change no value) and the thread count; the launcher hands larger
matrices, CPUs without AVX-512 and other devices to torch, within rounding of the same sums."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from activerm_fast import _core, _launch, _reference

needs_kernel = pytest.mark.skipif(not _core.wide_vectors(), reason="the kernel needs AVX-512")


def features_of(rng: np.random.Generator, n: int, d: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(rng.normal(size=(n, d)) * 3 + 1).to(dtype)


def matrix_of(rng: np.random.Generator, d: int, m: int, kind: str) -> torch.Tensor:
    full = rng.normal(size=(d, m))
    shapes = {
        "full": full,
        "upper": np.triu(full),
        "lower": np.tril(full),
        "diagonal": np.diag(np.diag(full)) if d == m else np.triu(np.tril(full)),
        "zero": np.zeros((d, m)),
        # a block of columns all zero between nonzero ones, and a row of zeros
        "holes": np.where(
            (np.arange(m) // 16 == 1)[None, :] | (np.arange(d) == d // 2)[:, None], 0.0, full
        ),  # fmt: skip
    }
    return torch.from_numpy(np.ascontiguousarray(shapes[kind]))


def reference(features: torch.Tensor, matrix: torch.Tensor, scale: float) -> np.ndarray:
    return _reference.project_features(features.double().numpy(), matrix.numpy(), scale)


def assert_same_values(got: torch.Tensor, want: np.ndarray) -> None:
    # equal values: a skipped zero term may leave +0 where the full sum gives -0
    assert got.dtype == torch.float64 and tuple(got.shape) == want.shape
    np.testing.assert_array_equal(got.numpy(), want)


@needs_kernel
@pytest.mark.parametrize(
    ("n", "d", "m"),
    [(1, 1, 1), (7, 5, 3), (8, 16, 16), (9, 17, 17), (200, 64, 64), (1031, 130, 40),
     (33, 3, 48), (16, 40, 8)],
)  # fmt: skip
@pytest.mark.parametrize("kind", ["full", "upper", "lower", "diagonal", "zero", "holes"])
def test_the_kernel_is_the_in_order_sum_bit_for_bit(rng, n, d, m, kind):
    features = features_of(rng, n, d, torch.float32)
    matrix = matrix_of(rng, d, m, kind)
    assert_same_values(_launch.project_features(features, matrix), reference(features, matrix, 1))


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("scale", "magnitude"), [(1.0, 1.0), (2.0**-3, 8.0), (2.0**40, 1e-12)])
def test_every_feature_dtype_and_power_of_two_scale(rng, dtype, scale, magnitude):
    """Half-precision features are widened as stored; the scale multiplies each widened feature
    (exactly: a power of two)."""
    features = (features_of(rng, 45, 24, torch.float64) * magnitude).to(dtype)
    matrix = matrix_of(rng, 24, 24, "upper")
    got = _launch.project_features(features, matrix, scale)
    assert_same_values(got, reference(features, matrix, scale))


@needs_kernel
@pytest.mark.parametrize("kind", ["full", "upper"])
def test_the_same_bits_on_one_thread_and_two(rng, kind):
    """Above the one-shot bound (n d m >= 2^20 multiply-adds) the tiles are shared between
    threads; every entry keeps one order, so the bytes are the same."""
    features = features_of(rng, 4100, 64, torch.float32)
    matrix = matrix_of(rng, 64, 64, kind)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _launch.project_features(features, matrix)
        torch.set_num_threads(2)
        two = _launch.project_features(features, matrix)
    finally:
        torch.set_num_threads(before)
    assert one.numpy().tobytes() == two.numpy().tobytes()
    assert_same_values(one, reference(features, matrix, 1))


@pytest.mark.parametrize(("n", "d", "m"), [(0, 5, 5), (6, 0, 4), (6, 4, 0)])
def test_empty_shapes(rng, n, d, m):
    out = _launch.project_features(
        features_of(rng, n, d, torch.float32), matrix_of(rng, d, m, "full")
    )
    assert out.shape == (n, m) and out.dtype == torch.float64
    assert not out.any()


@needs_kernel
def test_the_kernel_takes_small_and_triangular_matrices_torch_the_rest(rng):
    """Full matrices up to PROJECTION_FULL_ENTRIES and upper-triangular ones up to
    PROJECTION_TRIANGULAR_ENTRIES are the kernel's (the in-order sums, bit for bit); a larger
    full one is torch's product, the same sums within rounding."""
    side = int(np.sqrt(_launch.PROJECTION_FULL_ENTRIES))
    features = features_of(rng, 20, side + 1, torch.float32)
    full = matrix_of(rng, side + 1, side + 1, "full")
    upper = matrix_of(rng, side + 1, side + 1, "upper")
    assert _launch._kernel_projects(features, upper) and not _launch._kernel_projects(
        features, full
    )
    assert _launch._kernel_projects(features[:, :side], matrix_of(rng, side, side, "full"))
    assert_same_values(
        _launch.project_features(features, upper, 0.5), reference(features, upper, 0.5)
    )
    want = reference(features, full, 0.5)
    np.testing.assert_allclose(_launch.project_features(features, full, 0.5).numpy(), want,
                               rtol=1e-12, atol=1e-12 * np.abs(want).max())  # fmt: skip
    wide = int(np.sqrt(_launch.PROJECTION_TRIANGULAR_ENTRIES)) + 1
    assert not _launch._kernel_projects(features, matrix_of(rng, wide, wide, "upper"))


def test_torch_takes_cpus_without_the_kernel(rng, monkeypatch):
    """Where the kernel cannot run (ACTIVERM_FAST_NARROW_VECTORS set, as on a CPU without
    AVX-512) the product is torch's, and the kernel itself refuses rather than run AVX-512
    instructions."""
    monkeypatch.setenv("ACTIVERM_FAST_NARROW_VECTORS", "1")
    assert not _core.wide_vectors()
    small = matrix_of(rng, 24, 24, "full")
    features = features_of(rng, 30, 24, torch.float16)
    assert not _launch._kernel_projects(features, small)
    want = reference(features, small, 1.0)
    got = _launch.project_features(features, small)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    with pytest.raises(RuntimeError, match="AVX-512"):
        _core.project_features(_launch._feature_view(_core, features), small.data_ptr(), 24,
                               got.data_ptr())  # fmt: skip
