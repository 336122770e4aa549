"""Resumable, sharded output of :func:`~activerm_fast.data.embed`.

While a run goes, ``OUT.npz.parts/`` holds ``meta.json`` (what is being embedded: a run with
other settings or inputs refuses to resume there, unless no shard was written yet, when it
starts afresh) and one ``shard-NNNNNN.npz`` per block of rows, each
written to a temporary name and renamed, so a shard on disk is always whole. When every shard
is there, :meth:`ShardStore.finish` streams them into ``OUT.npz`` (again under a temporary name,
renamed last: the finished file is the completion marker) and removes the folder. Until then
no ``OUT.npz`` exists, so nothing half-written loads as a dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .npz_files import UNREADABLE_NPZ, npz_member

__all__ = ["META", "ShardStore", "parts_folder", "write_npz"]

META = "meta.json"


def _change(found: Any, expected: Any) -> str:
    """How a setting differs: the entries of a table (a model's files) that changed, or both
    values (a digest shortened)."""
    if isinstance(found, dict) and isinstance(expected, dict):
        names = sorted(k for k in {*found, *expected} if found.get(k) != expected.get(k))
        return f"{', '.join(names)} changed"
    return f"{_shown(found)} there, {_shown(expected)} now"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:36]}...{text[-1]}"


def parts_folder(out: Path) -> Path:
    """Where the shards of ``out`` live while it is being written.

    Examples
    --------
    >>> parts_folder(Path("features.npz")).name
    'features.npz.parts'
    """
    return out.with_name(out.name + ".parts")


class ShardStore:
    """The shards of one output file.

    Parameters
    ----------
    out : Path
        The ``.npz`` file the finished run writes.
    meta : dict
        JSON-serialisable description of the run (model, data, settings, row count); a
        folder left by a run with a different description is refused.
    shard_rows : int
        Rows per shard (the last one may be shorter).
    rows : int
        The number of rows of the whole output.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "features.npz"
    >>> store = ShardStore(out, {"model": "m"}, shard_rows=2, rows=3)
    >>> store.open()
    >>> for shard in store.missing():
    ...     store.write(shard, {"x": np.arange(len(store.rows_of(shard))), "tokens": np.int64(5)})
    >>> store.finish({"note": np.array("done")}, {"x": "values"})
    >>> with np.load(out) as z:
    ...     z["values"].tolist(), str(z["note"]), store.folder.exists()
    ([0, 1, 0], 'done', False)
    """

    def __init__(self, out: Path, meta: dict[str, Any], shard_rows: int, rows: int) -> None:
        self.out = out
        self.folder = parts_folder(out)
        self.meta = meta
        self.shard_rows = shard_rows
        self.rows = rows

    @property
    def num_shards(self) -> int:
        return -(-self.rows // self.shard_rows)

    def rows_of(self, shard: int) -> range:
        """The output rows shard ``shard`` holds."""
        start = shard * self.shard_rows
        return range(start, min(start + self.shard_rows, self.rows))

    def open(self) -> None:
        """Create the folder with its ``meta.json``, or check the one a killed run left (one
        with no shard yet, of a run refused before its first, is replaced)."""
        meta_file = self.folder / META
        if meta_file.is_file():
            try:
                found = json.loads(meta_file.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{meta_file}: not JSON ({err.msg}); remove {self.folder}"
                ) from None
            expected = json.loads(json.dumps(self.meta))  # tuples become lists, as on disk
            changed = sorted(k for k in {*found, *expected} if found.get(k) != expected.get(k))
            if changed and not any(self.folder.glob("shard-*.npz")):
                # a run refused before its first shard left nothing to resume: start afresh
                _atomic_write_text(meta_file, json.dumps(self.meta, indent=1))
                return
            if changed:
                raise ValueError(
                    f"{self.folder} holds a run with other settings ({', '.join(changed)}: "
                    f"{_change(found.get(changed[0]), expected.get(changed[0]))}): run "
                    f"the same command to resume it, or remove the folder"
                )
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(meta_file, json.dumps(self.meta, indent=1))

    def shard_path(self, shard: int) -> Path:
        return self.folder / f"shard-{shard:06d}.npz"

    def done(self, shard: int) -> bool:
        return self.shard_path(shard).is_file()

    def write(self, shard: int, arrays: dict[str, np.ndarray]) -> None:
        """Write one shard whole: to a temporary name, then renamed."""
        write_npz(self.shard_path(shard), arrays)

    def read(self, shard: int, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The arrays ``keys`` of one shard (the others stay on disk)."""
        path = self.shard_path(shard)
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {key: npz_member(archive, key) for key in keys}
        except (OSError, *UNREADABLE_NPZ) as err:
            raise ValueError(f"{path}: unreadable shard ({err}); remove it and resume") from err

    def missing(self) -> list[int]:
        return [s for s in range(self.num_shards) if not self.done(s)]

    def finish(self, columns: dict[str, np.ndarray], streamed: dict[str, str]) -> None:
        """Write ``out``: each shard key of ``streamed`` concatenated over the shards in order
        under its output name (never all in memory at once), then ``columns`` as they are;
        then remove the folder."""
        first = self.read(0, tuple(streamed))
        temporary = self.out.with_name(self.out.name + ".tmp")
        with zipfile.ZipFile(temporary, "w", allowZip64=True) as archive:
            for key, name in streamed.items():
                dtype = first[key].dtype
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    header = {
                        "descr": np.lib.format.dtype_to_descr(dtype),
                        "fortran_order": False,
                        "shape": (self.rows, *first[key].shape[1:]),
                    }
                    np.lib.format.write_array_header_2_0(member, header)
                    for part in self._parts(key):
                        member.write(np.ascontiguousarray(part, dtype).tobytes())
            for key, value in columns.items():
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
        os.replace(temporary, self.out)
        shutil.rmtree(self.folder)

    def _parts(self, key: str) -> Iterator[np.ndarray]:
        for shard in range(self.num_shards):
            part = self.read(shard, (key,))[key]
            expected = len(self.rows_of(shard))
            if part.shape[0] != expected:
                raise ValueError(
                    f"{self.shard_path(shard)}: {key} has {part.shape[0]} rows, expected "
                    f"{expected}; remove it and resume"
                )
            yield part

    def totals(self, key: str) -> int:
        """The sum over the shards of the scalar ``key``."""
        return sum(int(self.read(shard, (key,))[key]) for shard in range(self.num_shards))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An uncompressed ``.npz`` written to a temporary name and renamed: whole or absent.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "shard.npz"
    >>> write_npz(path, {"a": np.zeros(2)})
    >>> sorted(p.name for p in path.parent.iterdir())
    ['shard.npz']
    """
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        np.savez(file, **arrays)  # type: ignore[arg-type]
    os.replace(temporary, path)


def _atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
