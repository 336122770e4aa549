"""Arrays of .npz archives: read as np.load reads them, unless their headers lie."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from activerm_fast import data
from activerm_fast.data import pairs
from activerm_fast.data.npz_files import npy_header, npz_member


def _header(shape, dtype="<f4", version=(1, 0)) -> bytes:
    buffer = io.BytesIO()
    fields = {"descr": dtype, "fortran_order": False, "shape": shape}
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buffer, fields)
    else:
        np.lib.format.write_array_header_2_0(buffer, fields)
    return buffer.getvalue()


@pytest.mark.parametrize("compressed", [False, True])
def test_members_equal_what_np_load_reads(tmp_path, compressed):
    rng = np.random.default_rng(7)
    arrays = {
        "floats": rng.normal(size=(5, 3)).astype(np.float32),
        "empty": np.zeros((0, 4)),
        "scalar": np.array(2.5),
        "ints": rng.integers(-9, 9, size=(2, 3, 4)),
        "text": np.array(["a", "bcd"]),
    }
    path = tmp_path / "arrays.npz"
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    with np.load(path) as archive:
        for key, expected in arrays.items():
            got = npz_member(archive, key)
            assert got.dtype == expected.dtype and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_npy_header_reads_both_versions_and_stops_at_the_data(version):
    raw = _header((3, 2), "<f8", version) + np.arange(6.0).tobytes()
    file = io.BytesIO(raw)
    shape, fortran, dtype = npy_header(file)
    assert (shape, fortran, dtype) == ((3, 2), False, np.dtype("<f8"))
    assert file.read() == np.arange(6.0).tobytes()


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize("rows, held", [(10**12, 64), (3, 3 * 4 * 2 - 1)])
def test_a_header_declaring_more_than_the_archive_holds_is_named(tmp_path, compression, rows, held):
    path = tmp_path / "lying.npz"
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("embeddings.npy", _header((rows, 2)) + bytes(held))
    with np.load(path) as archive:
        with pytest.raises(
            ValueError, match=rf"embeddings: its header declares shape \({rows}, 2\)"
        ):
            npz_member(archive, "embeddings")
    with pytest.raises(ValueError, match=f"{path}: cannot read as a .npz of plain arrays"):
        data.load(str(path))
    with pytest.raises(ValueError, match="embeddings: its header declares"):
        pairs.load_shard(path, (0, 1), key="embeddings")  # mapped when stored, else read


def test_a_member_that_is_not_an_array_or_not_there_is_named(tmp_path):
    path = tmp_path / "mixed.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", b"plain text")
    with np.load(path) as archive:
        with pytest.raises(ValueError, match=r"notes.txt is not a .npy array"):
            npz_member(archive, "notes.txt")
        with pytest.raises(KeyError, match="gold is not a member"):
            npz_member(archive, "gold")


@pytest.mark.parametrize("rows", [1, 12, 5000])
def test_an_array_of_python_objects_is_named_as_such(tmp_path, rows):
    """A pickled object array's bytes are no itemsize times its count: it was called a damaged
    file (for few rows) or unpickled; it is named for what it is."""
    path = tmp_path / "objects.npz"
    np.savez(path, embeddings=np.ones((rows, 4), dtype=object), gold=np.arange(float(rows)))
    with np.load(path, allow_pickle=False) as archive:
        with pytest.raises(
            ValueError,
            match=r"^embeddings holds Python objects \(dtype object\), which are read "
            "only by unpickling; save it as an array of numbers or strings$",
        ):
            npz_member(archive, "embeddings")
    with pytest.raises(ValueError, match=f"{path}: cannot read .*embeddings holds Python objects"):
        data.load(str(path))
