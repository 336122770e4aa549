"""_threads.thread_stable_mm: a float64 product with the same bits on one thread and on two,
equal to the float64 reference, for products shorter than a block, of whole blocks and of
blocks and a remainder, at widths from 1 to 1,024."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from activerm_fast._threads import PRODUCT_BLOCK_ROWS, thread_stable_mm


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def on_threads(threads: int, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    torch.set_num_threads(threads)
    return thread_stable_mm(left, right)


@pytest.mark.parametrize("rows", [1, 5, 300, PRODUCT_BLOCK_ROWS - 1, PRODUCT_BLOCK_ROWS, 2500])
@pytest.mark.parametrize(("inner", "width"), [(1, 1), (8, 8), (24, 24), (64, 64), (200, 3),
                                              (512, 512), (64, 1024)])  # fmt: skip
def test_the_same_bits_on_one_and_two_threads(two_threads, rows, inner, width):
    rng = np.random.default_rng(rows * 1000 + inner + width)
    left = torch.from_numpy(rng.normal(size=(rows, inner)))
    right = torch.from_numpy(rng.normal(size=(inner, width)))
    one = on_threads(1, left, right)
    two = on_threads(2, left, right)
    assert one.dtype == torch.float64 and one.shape == (rows, width)
    assert one.numpy().tobytes() == two.numpy().tobytes()
    want = left.numpy() @ right.numpy()
    np.testing.assert_allclose(one.numpy(), want, rtol=1e-12, atol=1e-12 * np.sqrt(inner))


def test_writes_into_out_and_takes_transposed_factors(two_threads):
    rng = np.random.default_rng(4)
    left = torch.from_numpy(rng.normal(size=(1500, 32)))
    right = torch.from_numpy(rng.normal(size=(48, 32))).T  # not contiguous, as coreset's
    out = torch.full((1500, 48), np.nan, dtype=torch.float64)
    torch.set_num_threads(2)
    returned = thread_stable_mm(left, right, out=out)
    assert returned.data_ptr() == out.data_ptr()
    assert not torch.isnan(out).any()
    assert torch.equal(out, on_threads(1, left, right))


def test_the_caller_thread_count_is_restored(two_threads):
    torch.set_num_threads(2)
    thread_stable_mm(torch.ones(3, 4, dtype=torch.float64), torch.ones(4, 2, dtype=torch.float64))
    assert torch.get_num_threads() == 2
