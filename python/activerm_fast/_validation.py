"""Input checks shared by every public function.

Each check converts its argument to a torch tensor (zero-copy for NumPy arrays and CPU tensors)
and raises ``TypeError``/``ValueError`` naming the argument and what was seen, so no kernel
ever receives an array it could read out of bounds or silently misinterpret.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ._threads import one_thread_pass

FLOAT_DTYPES = (torch.float32, torch.float64)
# Features may also be half precision (what the feature extractors of large models produce):
# the kernels read them as stored and widen each value exactly (csrc feature_types.h).
FEATURE_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
FEATURE_DTYPE_NAMES = "float32, float64, float16 or bfloat16"
INDEX_DTYPES = (torch.int32, torch.int64)


def describe(x: Any) -> str:
    """A short description of a value for an error message."""
    if isinstance(x, (np.ndarray, torch.Tensor)):
        kind = type(x).__module__.split(".")[0]
        return f"{kind} array of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"{type(x).__name__}"


def first_line(err: BaseException) -> str:
    """An exception's message as one line (its type's name when it has none), for errors that
    wrap a library's multi-line message."""
    text = str(err).strip()
    return text.splitlines()[0].strip() if text else type(err).__name__


def as_tensor(x: Any, name: str) -> torch.Tensor:
    """A tensor view of a NumPy array, torch tensor or nested sequence (copying only if needed).

    Arrays in the other byte order (e.g. from a file written on a big-endian machine) are
    converted to native order; complex numbers and floats wider than 64 bits are refused.
    """
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        kind = x.dtype.kind
        if kind == "c" or (kind == "f" and x.dtype.itemsize > 8):
            raise TypeError(
                f"{name} must hold real numbers of at most 64 bits "
                f"(float16, float32, float64 or integers), got dtype {x.dtype}"
            )
        if x.dtype == object or kind not in "biuf":
            raise TypeError(f"{name} must hold numbers, got dtype {x.dtype}")
        if not x.dtype.isnative:
            x = x.astype(x.dtype.newbyteorder("="))
        with warnings.catch_warnings():
            # read-only arrays (e.g. memory maps) are only ever read by the kernels
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, (list, tuple)):
        try:
            values = np.asarray(x)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{name} must be a NumPy array or torch tensor, got {describe(x)}"
            ) from err
        return as_tensor(values, name)
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


def all_finite(t: torch.Tensor) -> bool:
    """Whether every element of ``t`` is finite.

    A sum is NaN or infinite whenever an element is, so a finite sum proves the tensor finite
    in one vectorised pass that allocates nothing (``isfinite`` is several passes, each
    writing a mask); only a sum that is not finite (a non-finite element, or finite elements
    whose sum overflows) is checked element by element. A half-precision sum overflows at a
    few thousand moderate values, so halves are checked by their largest and smallest element
    instead (NaN propagates through both; two passes, nothing allocated either).
    """
    if t.numel() == 0 or not (t.is_floating_point() or t.is_complex()):
        return True
    with one_thread_pass(t):
        if t.dtype in (torch.float16, torch.bfloat16):
            return bool(torch.isfinite(t.amax())) and bool(torch.isfinite(t.amin()))
        return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def check_finite(t: torch.Tensor, name: str) -> None:
    if all_finite(t):
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        position = tuple(int(v) for v in torch.nonzero(bad)[0].tolist())
        value = t[position].item()
        where = position[0] if len(position) == 1 else position
        raise ValueError(f"{name} must be finite, got {value} at index {where}")


def features_tensor(x: Any, name: str = "features", *, members: bool = False) -> torch.Tensor:
    """(n, d) float32/float64/float16/bfloat16, contiguous, finite, non-empty; with ``members``
    also (E, n, d) (one feature matrix per ensemble member), always returned as (E, n, d).

    Every check runs on the array as given, so errors quote the caller's own shape and index.
    """
    t = as_tensor(x, name)
    if t.dtype not in FEATURE_DTYPES:
        raise TypeError(f"{name} must be {FEATURE_DTYPE_NAMES}, got {t.dtype}")
    if members and t.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape (n, d) or (E, n, d), got {tuple(t.shape)}")
    if not members and t.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got {tuple(t.shape)}")
    if 0 in t.shape:
        raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
    supported_device(t, name)
    check_finite(t, name)
    t = t.contiguous()
    return t.unsqueeze(0) if members and t.ndim == 2 else t


def _index_pairs(x: Any, name: str) -> torch.Tensor:
    """(P, 2) int32/int64 as given (dtype and shape checked, values not)."""
    t = as_tensor(x, name)
    if t.dtype not in INDEX_DTYPES:
        raise TypeError(f"{name} must be int32 or int64, got {t.dtype}")
    if t.ndim != 2 or t.shape[1] != 2:
        raise ValueError(f"{name} must have shape (P, 2), got {tuple(t.shape)}")
    return t


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
    t = _index_pairs(x, name)
    same_device(t, name, device, "features")
    t = t.contiguous()
    if t.shape[0] == 0:
        return t
    low, high = torch.aminmax(t)  # one pass; the rows only looked for when one is out of range
    if int(low) < 0 or int(high) >= n:
        bad = (t < 0) | (t >= n)
        row = int(torch.nonzero(bad.any(dim=1))[0, 0])
        i, j = (int(v) for v in t[row].tolist())
        raise ValueError(f"{name}[{row}] = ({i}, {j}) is out of range for {n} responses")
    if distinct or unique:
        check_distinct_pairs(t, name)
    if unique:
        check_unique_pairs(t, n, name)
    return t


def nonnegative_pairs(x: Any, name: str = "pairs", *, distinct: bool = False) -> np.ndarray:
    """(P, 2) int64 response indices on the CPU when the number of responses is not known:
    non-negative, and with ``distinct`` never a response compared with itself."""
    checked = _index_pairs(x, name).cpu().to(torch.int64).numpy()
    negative = (checked < 0).any(axis=1)
    if negative.any():
        row = int(np.flatnonzero(negative)[0])
        raise ValueError(f"{name}[{row}] = {tuple(checked[row].tolist())} has a negative index")
    if distinct:
        check_distinct_pairs(checked, name)
    return checked


def self_pair_row(pairs: np.ndarray | torch.Tensor) -> int | None:
    """The first row of (P, 2) pairs that compares a response with itself, or None."""
    if isinstance(pairs, torch.Tensor):
        equal = pairs[:, 0] == pairs[:, 1]
        return int(torch.nonzero(equal)[0, 0]) if bool(equal.any()) else None
    same = np.flatnonzero(pairs[:, 0] == pairs[:, 1])
    return int(same[0]) if same.size else None


def check_distinct_pairs(pairs: np.ndarray | torch.Tensor, name: str) -> None:
    """Refuse a pair of a response with itself (it carries no preference information)."""
    row = self_pair_row(pairs)
    if row is not None:
        i = int(pairs[row, 0])
        raise ValueError(f"{name}[{row}] = ({i}, {i}) compares a response with itself")


def pair_keys(pairs: Any, n: int) -> Any:
    """One int64 key per unordered pair, ``min * n + max`` (``n`` above every index), as a
    tensor for a tensor and an array for an array, so (i, j) and (j, i) share one key."""
    if isinstance(pairs, torch.Tensor):
        lo = torch.minimum(pairs[:, 0], pairs[:, 1]).to(torch.int64)
        hi = torch.maximum(pairs[:, 0], pairs[:, 1]).to(torch.int64)
    else:
        lo = np.minimum(pairs[:, 0], pairs[:, 1]).astype(np.int64)
        hi = np.maximum(pairs[:, 0], pairs[:, 1]).astype(np.int64)
    return lo * n + hi


def check_unique_pairs(t: torch.Tensor, n: int, name: str) -> None:
    keys = pair_keys(t, n)
    if keys.shape[0] < 2 or bool((keys[1:] > keys[:-1]).all()):
        return  # sorted pools (every builder in pairs.py makes them) need no sort
    order = torch.argsort(keys, stable=True)
    sorted_keys = keys[order]
    repeat = sorted_keys[1:] == sorted_keys[:-1]
    if bool(repeat.any()):
        at = int(torch.nonzero(repeat)[0, 0])
        first, again = int(order[at]), int(order[at + 1])
        a, b = (int(v) for v in t[again].tolist())
        c, e = (int(v) for v in t[first].tolist())
        raise ValueError(f"{name}[{again}] = ({a}, {b}) repeats {name}[{first}] = ({c}, {e})")


def labelled_mask(pairs: torch.Tensor, labelled: torch.Tensor | None, n: int) -> torch.Tensor:
    """(P,) bool: which validated candidate ``pairs`` are already ``labelled`` (either order)."""
    if labelled is None or labelled.shape[0] == 0 or pairs.shape[0] == 0:
        return torch.zeros(pairs.shape[0], dtype=torch.bool, device=pairs.device)
    keys = pair_keys(pairs, n)
    done = torch.sort(pair_keys(labelled, n)).values
    # a binary search of each candidate's key among the few sorted labelled ones: O(P log M)
    at = torch.searchsorted(done, keys).clamp_max_(done.shape[0] - 1)
    found: torch.Tensor = done[at] == keys
    return found


def available_count(pairs: torch.Tensor, labelled: torch.Tensor | None, n: int) -> int:
    """How many validated candidate ``pairs`` are not labelled yet."""
    return int(pairs.shape[0]) - int(labelled_mask(pairs, labelled, n).sum())


def binary_labels(x: Any, count: int, name: str = "labels") -> np.ndarray:
    """A (count,) int64 array of 0/1 labels (bool, integer or 0.0/1.0 input)."""
    t = as_tensor(x, name)
    if tuple(t.shape) != (count,):
        raise ValueError(f"{name} must have shape ({count},), got {tuple(t.shape)}")
    values = t.cpu().numpy()
    bad = (values != 0) & (values != 1)
    if bad.any():
        at = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be 0 or 1, got {values[at]} at index {at}")
    return values.astype(np.int64)


def labelled_pairs(
    pairs: Any, labels: Any, n: int, where: str = ""
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Validated (M, 2) int64 pairs of distinct rows in [0, n) and (M,) 0/1 labels, or Nones.

    Both arrays may be on any device; the results are on the CPU. ``where`` prefixes every
    error message (e.g. the file the arrays came from).
    """
    if pairs is None and labels is None:
        return None, None
    if pairs is None or labels is None:
        given, absent = ("pairs", "labels") if labels is None else ("labels", "pairs")
        raise ValueError(f"{where}{given} is given without {absent}; labelled pairs need both")
    t = as_tensor(pairs, f"{where}pairs")
    valid = pairs_tensor(t, n, t.device, f"{where}pairs", distinct=True)
    checked = valid.cpu().to(torch.int64).numpy().copy()
    return checked, binary_labels(labels, checked.shape[0], f"{where}labels")


def real_tensor(x: Any, name: str, *, integers: bool = True) -> torch.Tensor:
    """A tensor of real numbers: floating point, or also integers with ``integers``."""
    t = as_tensor(x, name)
    if not integers and not t.dtype.is_floating_point:
        raise TypeError(f"{name} must be floating point, got {describe(x)}")
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    return t


def real_vector(
    x: Any, name: str, n: int | None = None, *, min_size: int = 0, hint: str = ""
) -> np.ndarray:
    """A finite real (n,) vector as a new float64 NumPy array.

    ``n`` None accepts any length of at least ``min_size``; ``hint`` is appended to a shape
    error for 2-D input.
    """
    t = real_tensor(x, name)
    if n is not None and tuple(t.shape) != (n,):
        raise ValueError(f"{name} must have shape (n,) = ({n},), got {tuple(t.shape)}")
    if t.ndim != 1 or t.shape[0] < min_size:
        size = f" with n >= {min_size}" if min_size else ""
        extra = hint if t.ndim == 2 else ""
        raise ValueError(f"{name} must have shape (n,){size}, got {tuple(t.shape)}{extra}")
    check_finite(t, name)
    vector: np.ndarray = t.to(torch.device("cpu"), torch.float64).numpy().copy()
    return vector


def integer_vector(x: Any, n: int, name: str) -> np.ndarray:
    """An (n,) vector of integers (any integer dtype) as a new int64 NumPy array."""
    values = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if values.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {values.dtype}")
    if values.shape != (n,):
        raise ValueError(f"{name} must have shape (n,) = ({n},), got {values.shape}")
    return values.astype(np.int64)


def embeddings_tensor(
    x: Any,
    name: str = "embeddings",
    *,
    columns: int | None = None,
    integers: bool = False,
    device: torch.device | None = None,
) -> torch.Tensor:
    """(n, D) finite real embeddings (n may be 0) as float32 on ``device`` (default: CPU).

    ``columns`` fixes D; otherwise any D >= 1. With ``integers`` integer arrays are accepted
    too. Values that overflow float32 are refused like infinities, and so is a whole array too
    small for float32's normal range (it would round to zeros).
    """
    t = real_tensor(x, name, integers=integers)
    if columns is not None and (t.ndim != 2 or t.shape[1] != columns):
        raise ValueError(f"{name} must have shape (n, {columns}), got {tuple(t.shape)}")
    if t.ndim != 2 or t.shape[1] == 0:
        raise ValueError(f"{name} must have shape (n, D) with D >= 1, got {tuple(t.shape)}")
    converted = t.to(torch.device("cpu") if device is None else device, torch.float32)
    if not all_finite(converted):
        check_finite(t, name)  # NaN or infinity in the input itself
        bad = ~torch.isfinite(converted)
        row, col = (int(v) for v in torch.nonzero(bad)[0].tolist())
        value = t[row, col].item()
        raise ValueError(f"{name} must fit in float32, got {value} at index ({row}, {col})")
    if t.dtype == torch.float64 and t.numel():
        # a scale below float32's normal range would round to zeros and subnormals
        largest = t.abs().max().item()
        if 0.0 < largest < torch.finfo(torch.float32).tiny:
            raise ValueError(
                f"{name} must fit in float32, got values no larger than {largest:.3g} "
                "(below float32's smallest normal number); rescale them"
            )
    return converted.contiguous()


def boolean_mask(x: Any, count: int, name: str) -> np.ndarray:
    """A (count,) boolean mask from any array kind, as a new NumPy array."""
    t = as_tensor(x, name)
    mask: np.ndarray = mask_tensor(t, count, t.device, name).cpu().numpy().copy()
    return mask


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
    *,
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
    if t.ndim not in (1, 2) or t.shape[-1] != n or (t.ndim == 2 and t.shape[0] == 0):
        width = "n" if n is None else n
        raise ValueError(f"{name} must have shape ({width},) or (E, {width}), got {tuple(t.shape)}")
    same_device(t, name, device, reference)
    check_finite(t, name)  # before adding the member axis: the index is the caller's
    t = t.contiguous()
    return t.unsqueeze(0) if t.ndim == 1 else t


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


def seed_argument(seed: Any, name: str = "seed") -> int:
    """A random seed: a Python int in 0 .. 2**64 - 1, the range torch's and NumPy's generators
    both take."""
    if count_argument(seed, name) >= 1 << 64:
        raise ValueError(f"{name} must be below 2**64, got {seed}")
    return int(seed)


def device_argument(device: Any, name: str = "device") -> torch.device:
    """A torch device this process can put tensors on: the CPU, or a CUDA device torch sees.

    Examples
    --------
    >>> device_argument("cpu")
    device(type='cpu')
    >>> device_argument("tpu")
    Traceback (most recent call last):
    ...
    ValueError: device must name a device such as 'cpu', 'cuda' or 'cuda:1', got 'tpu'
    """
    if isinstance(device, bool) or not isinstance(device, (str, torch.device, int)):
        raise TypeError(f"{name} must be a str, int or torch.device, got {type(device).__name__}")
    try:
        where = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"{name} must name a device such as 'cpu', 'cuda' or 'cuda:1', got {device!r}"
        ) from None
    if where.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} is {where}; only CPU and CUDA devices are supported")
    if where.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{name} is {where}, but torch {torch.__version__} sees no GPU here")
        if where.index is not None and where.index >= count:
            raise ValueError(f"{name} is {where}, but torch sees {count} GPU(s): 0..{count - 1}")
    return where


def positive_integer(k: Any, name: str) -> int:
    """A Python int >= 1."""
    if integer_argument(k, name) < 1:
        raise ValueError(f"{name} must be a positive integer, got {k}")
    return int(k)


def integer_sequence(values: Any, name: str) -> list[Any]:
    """The items of a sequence of positive integers (a list, a tuple, an array), each left to
    the caller to check; a TypeError naming ``name`` for one number, a string or anything else
    that is not a sequence.

    Examples
    --------
    >>> integer_sequence((512, 256), "hidden")
    [512, 256]
    >>> integer_sequence(3, "hidden")
    Traceback (most recent call last):
    ...
    TypeError: hidden must be a sequence of positive integers, got int 3
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(
            f"{name} must be a sequence of positive integers, got {describe(values)} {values!r:.40}"
        )
    return list(values)


def real_number(x: Any, name: str) -> float:
    """A real number (not a bool) as a float; an integer beyond float64's range is a
    ValueError naming it, not float()'s OverflowError.

    Examples
    --------
    >>> real_number(3, "ridge")
    3.0
    >>> real_number(10**400, "ridge")
    Traceback (most recent call last):
    ...
    ValueError: ridge must be within float64's range (about 1.8e308), got a number of 401 digits
    """
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(x).__name__}")
    try:
        return float(x)
    except OverflowError:
        seen = str(x)
        if len(seen) > 24:  # an integer of hundreds of digits
            seen = f"a number of {len(seen.lstrip('-'))} digits"
        raise ValueError(
            f"{name} must be within float64's range (about 1.8e308), got {seen}"
        ) from None


def positive_scalar(x: Any, name: str) -> float:
    value = real_number(x, name)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value


def excluded_count(excluded: torch.Tensor | None) -> int:
    """How many pairs a (P,) mask or a tensor of positions excludes."""
    if excluded is None:
        return 0
    return int(excluded.sum()) if excluded.dtype == torch.bool else excluded.numel()


def budget(k: Any, count: int, excluded: torch.Tensor | None) -> int:
    """k as an int no larger than the number of pairs that may be chosen; ``excluded`` is a
    (count,) mask or the positions excluded."""
    chosen = count_argument(k)
    unavailable = excluded_count(excluded)
    if chosen > count - unavailable:
        raise ValueError(
            f"k = {chosen} is larger than the {count - unavailable} pairs available "
            f"({count} candidates, {unavailable} excluded)"
        )
    return chosen


def prior_argument(
    prior: Any, d: int, device: torch.device, name: str = "prior"
) -> float | torch.Tensor:
    """F0 as given: a positive scalar lambda (F0 = lambda I), or a symmetric finite (d, d)
    matrix as float64 (its positive definiteness is checked where it is factored)."""
    if isinstance(prior, (np.ndarray, torch.Tensor)) and getattr(prior, "ndim", 0) > 0:
        matrix = float_tensor(prior, name, (d, d), device).double()
        asymmetry = (matrix - matrix.T).abs().max().item()
        if asymmetry > 1e-10 * max(matrix.abs().max().item(), 1e-300):
            raise ValueError(f"{name} must be symmetric, got max |A - A^T| = {asymmetry:.3g}")
        return matrix
    return positive_scalar(prior, name)


def positive_or_infinite(x: Any, name: str) -> float:
    """A positive number, infinity included (e.g. a temperature whose limit is meaningful)."""
    value = real_number(x, name)
    if not value > 0:  # also refuses NaN
        raise ValueError(f"{name} must be a positive number or inf, got {x!r}")
    return value


def lazy_argument(lazy: Any) -> bool | str:
    """The greedy sweep asked for: True (lazy), False (dense) or "auto"."""
    if isinstance(lazy, bool) or (isinstance(lazy, str) and lazy == "auto"):
        return lazy
    raise ValueError(f'lazy must be True, False or "auto", got {lazy!r}')


def known_name(value: Any, choices: Iterable[str], what: str) -> str:
    """One of the registered names (e.g. of a strategy), or a ValueError listing them."""
    options = sorted(choices)
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"unknown {what} {value!r}; choose one of {options}")
    return value
