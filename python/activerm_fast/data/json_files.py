"""JSON files read whole or a line at a time, every failure a ValueError naming the file.

A file that is not UTF-8 text (a gzipped or binary one read as plain), not whole gzip data, not
JSON, or JSON nested deeper than the parser recurses, is one line naming the file (and the
line), never a decoder's own exception.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _parsed(text: str, prefix: str, *, lines: bool) -> Any:
    """The JSON value of ``text``, or a ValueError of ``prefix`` and what is wrong with it
    (with the line of ``text`` it is on, where ``text`` has ``lines``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        where = f", line {err.lineno}" if lines else ""
        raise ValueError(f"{prefix}not JSON ({err.msg}{where})") from None
    except RecursionError:  # a value nested thousands of levels deep
        raise ValueError(
            f"{prefix}nested too deeply to be data (the parser's recursion limit)"
        ) from None


def jsonl_records(
    path: str | os.PathLike[str], *, compressed: bool = False
) -> Iterator[tuple[str, Any]]:
    """(where, record) of every non-blank line of a UTF-8 JSONL file.

    ``where`` names the file and the line. A line that is not JSON, bytes that are not UTF-8
    text (a gzipped or binary file read as plain), or with ``compressed`` a file that is not
    whole gzip data, is a ValueError naming the file.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    compressed : bool, default False
        Read it as gzip-compressed (a ``.jsonl.gz``); the caller decides, because the files
        this module writes are plain JSONL whatever their suffix.

    Yields
    ------
    where : str
        ``"<path>, line <number>"``.
    record : object
        The line's JSON value.

    Raises
    ------
    ValueError
        Naming the file (and the line): not JSON, not UTF-8 text, not gzip data.

    Examples
    --------
    >>> import gzip, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "rows.jsonl")
    >>> with open(path, "w") as file:
    ...     _ = file.write('{"first": 0}\\n\\n[1, 2]\\n')
    >>> [(where.rsplit(", ", 1)[1], record) for where, record in jsonl_records(path)]
    [('line 1', {'first': 0}), ('line 3', [1, 2])]
    >>> with open(path, "wb") as file:
    ...     _ = file.write(gzip.compress(b'{"first": 0}'))
    >>> list(jsonl_records(path))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...rows.jsonl, after line 0: not UTF-8 text (invalid start byte at byte 1 ...
    >>> list(jsonl_records(path, compressed=True))  # doctest: +ELLIPSIS
    [('...rows.jsonl, line 1', {'first': 0})]
    """
    opener = gzip.open if compressed else open
    with opener(path, "rt", encoding="utf-8") as lines:
        number = 0
        try:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    where = f"{path}, line {number}"
                    yield where, _parsed(line, f"{where}: ", lines=False)
        except UnicodeDecodeError as err:
            hint = "" if compressed else "; a JSONL file is plain text (unpack a .gz first)"
            raise ValueError(
                f"{path}, after line {number}: not UTF-8 text ({err.reason} at byte "
                f"{err.start} of a block){hint}"
            ) from None
        except (gzip.BadGzipFile, EOFError, zlib.error) as err:  # only gzip.open raises these
            raise ValueError(f"{path}, after line {number}: not whole gzip data ({err})") from None


def json_document(path: str | os.PathLike[str], what: str) -> Any:
    """The JSON value of the whole UTF-8 file ``path`` (an export, a records file).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    what : str
        Which file it is, for the error message (e.g. ``"Label Studio export"``).

    Returns
    -------
    object
        The parsed JSON.

    Raises
    ------
    ValueError
        One line naming the file, if it cannot be read, is not UTF-8 text (a gzipped or
        binary file) or is not JSON.

    Examples
    --------
    >>> import gzip, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "export.json")
    >>> with open(path, "w") as file:
    ...     _ = file.write('[{"id": 1}]')
    >>> json_document(path, "Label Studio export")
    [{'id': 1}]
    >>> with open(path, "wb") as file:
    ...     _ = file.write(gzip.compress(b"[]"))
    >>> json_document(path, "Label Studio export")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...export.json: the Label Studio export is not UTF-8 text (invalid start byte ...
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path}: the {what} is not UTF-8 text ({err.reason} at byte {err.start}); a JSON "
            "file is plain text (unpack a .gz first)"
        ) from None
    except OSError as err:
        raise ValueError(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    return _parsed(text, f"{path}: the {what} is ", lines=True)
