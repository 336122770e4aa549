"""Arrays of .npz archives read only after their headers are checked against the bytes stored.

A damaged or hand-made archive can declare any shape in an array's header; NumPy allocates what
the header declares before it reads, so a header of 10**14 elements would end in a MemoryError
(or in pages of zeros the file never held) instead of a message naming the file.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from typing import IO

import numpy as np

from .._validation import describe, first_line


def npy_header(file: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) of the .npy array whose magic string starts at the
    file's position, which is left at the first byte of the data.

    Examples
    --------
    >>> import io
    >>> buffer = io.BytesIO()
    >>> np.save(buffer, np.zeros((3, 2), np.float32))
    >>> _ = buffer.seek(0)
    >>> shape, fortran, dtype = npy_header(buffer)
    >>> shape, fortran, str(dtype), buffer.tell()
    ((3, 2), False, 'float32', 128)
    """
    version = np.lib.format.read_magic(file)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(file)
    return np.lib.format.read_array_header_2_0(file)


def check_declared_size(key: str, shape: tuple[int, ...], dtype: np.dtype, held: int) -> int:
    """The bytes a .npy header of ``shape`` and ``dtype`` declares; a ValueError naming
    ``key`` when they are more than the ``held`` bytes stored after the header.

    Examples
    --------
    >>> check_declared_size("gold", (3,), np.dtype(np.float64), 24)
    24
    >>> check_declared_size("gold", (10**12,), np.dtype(np.float64), 24)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: gold: its header declares shape (1000000000000,) of float64 (8,000,... bytes) ...
    """
    declared = math.prod(shape) * dtype.itemsize
    if declared > held:
        raise ValueError(
            f"{key}: its header declares shape {shape} of {dtype} ({declared:,} bytes) but the "
            f"archive holds {held:,} bytes of it: the file is damaged or was not written whole"
        )
    return declared


def npz_member(archive: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    """The array ``key`` of an open .npz archive, read once its header's shape is known to
    fit the bytes the archive stores for it.

    Raises
    ------
    KeyError
        If the archive holds no array ``key``.
    ValueError
        If the member is not a .npy array, or its header declares more data than it holds,
        or the array does not fit in memory.

    Examples
    --------
    >>> import io
    >>> buffer = io.BytesIO()
    >>> np.savez(buffer, gold=np.arange(3.0))
    >>> _ = buffer.seek(0)
    >>> with np.load(buffer) as archive:
    ...     npz_member(archive, "gold").tolist()
    [0.0, 1.0, 2.0]
    """
    files = archive.zip
    if files is None:
        raise ValueError(f"{key}: the archive is closed")
    names = files.namelist()
    name = f"{key}.npy" if f"{key}.npy" in names else key
    if name not in names:
        raise KeyError(f"{key} is not a member of the archive")
    stored = files.getinfo(name).file_size
    with files.open(name) as member:
        try:
            shape, _, dtype = npy_header(member)
        except ValueError as err:
            raise ValueError(f"{key} is not a .npy array ({err})") from None
        held = stored - member.tell()
    if dtype.hasobject:  # pickled Python objects: their size says nothing of the array's
        raise ValueError(
            f"{key} holds Python objects (dtype {dtype}), which are read only by unpickling; "
            "save it as an array of numbers or strings"
        )
    declared = check_declared_size(key, shape, dtype, held)
    try:
        array: np.ndarray = archive[key]
    except MemoryError:
        raise ValueError(
            f"{key} of shape {shape} ({declared:,} bytes) does not fit in the memory left"
        ) from None
    return array


# What reading a .npz raises for one that is not whole: object arrays refused without pickle, a
# header that lies, a truncated or corrupt archive, a missing member, no zip archive at all
UNREADABLE_NPZ = (ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of a .npz file, each read by :func:`npz_member`.

    Raises
    ------
    ValueError
        Naming the file, if it is not a .npz of plain arrays (truncated, corrupt, pickled
        object arrays, a single .npy, a header declaring more than it holds).

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "arrays.npz")
    >>> np.savez(path, gold=np.arange(2.0))
    >>> read_npz(path)["gold"].tolist()
    [0.0, 1.0]
    >>> with open(path, "wb") as file:
    ...     _ = file.write(b"not an archive")
    >>> read_npz(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...arrays.npz: cannot read as a .npz of plain arrays (not a zip archive or a ...
    """
    try:
        with open(path, "rb") as file:  # closed however np.load fails
            head = file.read(6)
            if not head.startswith(b"PK") and head != b"\x93NUMPY":
                # np.load takes anything else for a pickle and suggests loading it unsafely
                raise ValueError("not a zip archive or a .npy array")
            file.seek(0)
            loaded = np.load(file, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError(f"found a single {describe(loaded)}, not named arrays")
            with loaded as archive:
                return {key: npz_member(archive, key) for key in archive.files}
    except UNREADABLE_NPZ as err:
        reason = first_line(err)
        raise ValueError(f"{path}: cannot read as a .npz of plain arrays ({reason})") from err
