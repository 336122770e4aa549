"""What a reward-head fit multiplies in: float32, or bfloat16 where the hardware has it.

The fit's matrix products are most of its time, and a CPU with AVX512-BF16 or AMX (or a
CUDA device of compute capability 8 or more) multiplies bfloat16 faster than float32
(``bench/bench_fit.py`` and ``bench/bench_main_job.py`` time the fit both ways). The weights,
their gradients and AdamW's moments stay float32 either way; only the products of the
training steps see bfloat16 operands.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from .._validation import known_name

PRECISIONS = ("auto", "float32", "bfloat16")
# the CPU flags of native bfloat16 products (Linux's names in /proc/cpuinfo)
_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The flags /proc/cpuinfo lists for the first CPU (none where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def native_bfloat16(device: str | torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 in hardware (not emulated in float32).

    Examples
    --------
    >>> from activerm_fast.model.precision import native_bfloat16
    >>> native_bfloat16("meta")  # no device to multiply on
    False
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    # oneDNN is what multiplies bfloat16 on the CPU with the instructions the flags name
    return bool(torch._C._has_mkldnn) and bool(_cpu_flags() & _BFLOAT16_FLAGS)


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``precision`` as "float32" or "bfloat16": "auto" is bfloat16 where ``device``
    multiplies it natively (:func:`native_bfloat16`), else float32.

    Raises
    ------
    ValueError
        If ``precision`` is not one of :data:`PRECISIONS`.

    Examples
    --------
    >>> from activerm_fast.model.precision import resolve_precision
    >>> resolve_precision("float32", "cpu"), resolve_precision("auto", "meta")
    ('float32', 'float32')
    >>> resolve_precision("half", "cpu")
    Traceback (most recent call last):
    ...
    ValueError: unknown precision 'half'; choose one of ['auto', 'bfloat16', 'float32']
    """
    known_name(precision, PRECISIONS, "precision")
    if precision != "auto":
        return precision
    return "bfloat16" if native_bfloat16(device) else "float32"
