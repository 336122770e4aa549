"""Input checks shared by every public function.

Each check converts its argument to a torch tensor (zero-copy for NumPy arrays and CPU tensors)
and raises ``TypeError``/``ValueError`` naming the argument and what was seen, so no kernel
ever receives an array it could read out of bounds or silently misinterpret.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
import torch

FLOAT_DTYPES = (torch.float32, torch.float64)
INDEX_DTYPES = (torch.int32, torch.int64)


def describe(x: Any) -> str:
    """A short description of a value for an error message."""
    if isinstance(x, (np.ndarray, torch.Tensor)):
        kind = type(x).__module__.split(".")[0]
        return f"{kind} array of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"{type(x).__name__}"


def as_tensor(x: Any, name: str) -> torch.Tensor:
    """A tensor view of a NumPy array, torch tensor or nested sequence (copying only if needed)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        if x.dtype == object or x.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers, got dtype {x.dtype}")
        with warnings.catch_warnings():
            # read-only arrays (e.g. memory maps) are only ever read by the kernels
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, (list, tuple)):
        try:
            return torch.from_numpy(np.asarray(x))
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{name} must be a NumPy array or torch tensor, got {describe(x)}"
            ) from err
    raise TypeError(f"{name} must be a NumPy array or torch tensor, got {describe(x)}")


def is_numpy_like(x: Any) -> bool:
    """Whether results should be handed back as NumPy arrays (anything that is not a tensor)."""
    return not isinstance(x, torch.Tensor)


def same_device(t: torch.Tensor, name: str, device: torch.device, reference: str) -> None:
    if t.device != device:
        raise ValueError(
            f"{name} is on {t.device} but {reference} is on {device}; move both to one device"
        )


def supported_device(t: torch.Tensor, name: str) -> None:
    if t.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} is on {t.device}; only CPU and CUDA devices are supported")


def check_finite(t: torch.Tensor, name: str) -> None:
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        position = tuple(int(v) for v in torch.nonzero(bad)[0].tolist())
        value = t[position].item()
        where = position[0] if len(position) == 1 else position
        raise ValueError(f"{name} must be finite, got {value} at index {where}")


def features_tensor(x: Any, name: str = "features", *, members: bool = False) -> torch.Tensor:
    """(n, d) float32/float64, contiguous, finite, non-empty; with ``members`` also (E, n, d)
    (one feature matrix per ensemble member), always returned as (E, n, d)."""
    t = as_tensor(x, name)
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")
    if members and t.ndim == 2:
        t = t.unsqueeze(0)
    if members and t.ndim != 3:
        raise ValueError(f"{name} must have shape (n, d) or (E, n, d), got {tuple(t.shape)}")
    if not members and t.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got {tuple(t.shape)}")
    if 0 in t.shape:
        raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
    supported_device(t, name)
    check_finite(t, name)
    return t.contiguous()


def pairs_tensor(
    x: Any,
    n: int,
    device: torch.device,
    name: str = "pairs",
    *,
    distinct: bool = False,
    unique: bool = False,
) -> torch.Tensor:
    """(P, 2) int32/int64 indices into n responses on ``device``.

    With ``distinct`` every pair must compare two different responses; with ``unique`` no
    unordered pair may appear twice either (a candidate pool with repeats would let a
    selection pick one comparison twice).
    """
    t = as_tensor(x, name)
    if t.dtype not in INDEX_DTYPES:
        raise TypeError(f"{name} must be int32 or int64, got {t.dtype}")
    if t.ndim != 2 or t.shape[1] != 2:
        raise ValueError(f"{name} must have shape (P, 2), got {tuple(t.shape)}")
    same_device(t, name, device, "features")
    t = t.contiguous()
    if t.shape[0] == 0:
        return t
    bad = (t < 0) | (t >= n)
    if bool(bad.any()):
        row = int(torch.nonzero(bad.any(dim=1))[0, 0])
        i, j = (int(v) for v in t[row].tolist())
        raise ValueError(f"{name}[{row}] = ({i}, {j}) is out of range for {n} responses")
    if distinct or unique:
        same = t[:, 0] == t[:, 1]
        if bool(same.any()):
            row = int(torch.nonzero(same)[0, 0])
            i = int(t[row, 0])
            raise ValueError(f"{name}[{row}] = ({i}, {i}) compares a response with itself")
    if unique:
        check_unique_pairs(t, n, name)
    return t


def pair_keys(t: torch.Tensor, n: int) -> torch.Tensor:
    """One int64 key per unordered pair: min * n + max."""
    lo = torch.minimum(t[:, 0], t[:, 1]).to(torch.int64)
    hi = torch.maximum(t[:, 0], t[:, 1]).to(torch.int64)
    return lo * n + hi


def check_unique_pairs(t: torch.Tensor, n: int, name: str) -> None:
    keys = pair_keys(t, n)
    order = torch.argsort(keys, stable=True)
    sorted_keys = keys[order]
    repeat = sorted_keys[1:] == sorted_keys[:-1]
    if bool(repeat.any()):
        at = int(torch.nonzero(repeat)[0, 0])
        first, again = int(order[at]), int(order[at + 1])
        a, b = (int(v) for v in t[again].tolist())
        c, e = (int(v) for v in t[first].tolist())
        raise ValueError(f"{name}[{again}] = ({a}, {b}) repeats {name}[{first}] = ({c}, {e})")


def float_tensor(
    x: Any,
    name: str,
    shape: tuple[int, ...],
    device: torch.device,
    *,
    nonnegative: bool = False,
) -> torch.Tensor:
    """A finite float32/float64 array of an exact shape, on ``device``."""
    t = as_tensor(x, name)
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    same_device(t, name, device, "features")
    check_finite(t, name)
    if nonnegative and t.numel() and bool((t < 0).any()):
        at = int(torch.nonzero(t.reshape(-1) < 0)[0, 0])
        value = t.reshape(-1)[at].item()
        raise ValueError(f"{name} must be non-negative, got {value} at index {at}")
    return t.contiguous()


def rewards_tensor(
    x: Any,
    n: int | None,
    device: torch.device | None,
    name: str = "rewards",
    reference: str = "features",
) -> torch.Tensor:
    """(n,) or (E, n) finite rewards, returned as (E, n); n and device None accept any."""
    t = as_tensor(x, name)
    if n is None and t.ndim in (1, 2):
        n = t.shape[-1]
    supported_device(t, name)
    device = t.device if device is None else device
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[1] != n or t.shape[0] == 0:
        shown = tuple(as_tensor(x, name).shape)
        raise ValueError(f"{name} must have shape ({n},) or (E, {n}), got {shown}")
    same_device(t, name, device, reference)
    check_finite(t, name)
    return t.contiguous()


def mask_tensor(x: Any, count: int, device: torch.device, name: str) -> torch.Tensor:
    """A (count,) boolean mask on ``device``."""
    t = as_tensor(x, name)
    if t.dtype != torch.bool:
        raise TypeError(f"{name} must be a boolean mask, got {t.dtype}")
    if tuple(t.shape) != (count,):
        raise ValueError(f"{name} must have shape ({count},), got {tuple(t.shape)}")
    same_device(t, name, device, "features")
    return t


def integer_argument(k: Any, name: str) -> int:
    """A Python int (bools and floats are refused)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(k).__name__} {k!r}")
    return int(k)


def count_argument(k: Any, name: str = "k") -> int:
    """A non-negative Python int."""
    if integer_argument(k, name) < 0:
        raise ValueError(f"{name} must be non-negative, got {k}")
    return int(k)


def positive_integer(k: Any, name: str) -> int:
    """A Python int >= 1."""
    if integer_argument(k, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {k}")
    return int(k)


def positive_scalar(x: Any, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(x).__name__}")
    value = float(x)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value
