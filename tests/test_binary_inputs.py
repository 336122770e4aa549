"""Binary, gzipped or otherwise non-UTF-8 files where a text file is read: the annotation tools'
import paths and the text readers end in one ValueError naming the file (on the command line,
one ``activerm-fast: error: <file>: ...`` line and status 2), never a bare UnicodeDecodeError."""

from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pytest

from activerm_fast.cli import main
from activerm_fast.data import load, read_text_rows
from activerm_fast.data.argilla import RECORDS_FILE, pull_argilla, write_argilla
from activerm_fast.data.label_studio import pull_label_studio, write_label_studio_tasks

NOISE = bytes(range(128, 256)) * 4  # never UTF-8: continuation bytes first
GZIPPED = gzip.compress(b"[]")
RECORD = b'{"prompt": "p", "response": "r"}\n'


@pytest.fixture(scope="module")
def data():
    return load("arena-bench")


@pytest.fixture
def files(data, tmp_path):
    """A Label Studio export and an Argilla folder of one pair each, both good."""
    write_label_studio_tasks(data, np.array([[0, 20]]), tmp_path / "export.json")
    write_argilla(data, np.array([[0, 20]]), tmp_path / "argilla")
    return tmp_path


def import_args(root, source, tool, labelled="labelled.jsonl", *extra):
    return [
        "import",
        str(root / source),
        "--from",
        tool,
        "--data",
        "arena-bench",
        "--labelled",
        str(root / labelled),
        *extra,
    ]


# case -> (file overwritten with bad bytes, its bytes, the import's arguments)
CASES = {
    "binary Label Studio export": (
        "export.json",
        NOISE,
        lambda r: import_args(r, "export.json", "label-studio"),
    ),
    "gzipped Label Studio export": (
        "export.json",
        GZIPPED,
        lambda r: import_args(r, "export.json", "label-studio"),
    ),
    "binary Argilla folder": (
        f"argilla/{RECORDS_FILE}",
        NOISE,
        lambda r: import_args(r, "argilla", "argilla"),
    ),
    "gzipped Argilla records file": (
        f"argilla/{RECORDS_FILE}",
        GZIPPED,
        lambda r: import_args(r, f"argilla/{RECORDS_FILE}", "argilla"),
    ),
    "binary labelled file": (
        "labelled.jsonl",
        NOISE,
        lambda r: import_args(r, "export.json", "label-studio"),
    ),
    "gzipped held file": (
        "held.jsonl",
        GZIPPED,
        lambda r: import_args(r, "argilla", "argilla", "l.jsonl", "--held", str(r / "held.jsonl")),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_import_of_a_binary_file_is_one_line_naming_it(case, files, capsys):
    name, content, make_args = CASES[case]
    bad = files / name
    bad.write_bytes(content)
    assert main(make_args(files)) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and "Traceback" not in err and "internal error" not in err, err
    assert err.startswith(f"activerm-fast: error: {bad}"), err
    assert "not UTF-8 text" in err
    assert bad.read_bytes() == content  # a file it cannot read is left as it was
    written = [p.name for p in files.iterdir() if p.suffix == ".jsonl" and p != bad]
    assert written == []


@pytest.mark.parametrize("tool", ["label-studio", "argilla"])
def test_pulls_raise_a_value_error_naming_the_file(tool, files, data):
    source = files / ("export.json" if tool == "label-studio" else f"argilla/{RECORDS_FILE}")
    source.write_bytes(GZIPPED)
    labelled = files / "labelled.jsonl"
    with pytest.raises(ValueError, match="not UTF-8 text") as caught:
        if tool == "label-studio":
            pull_label_studio(data, labelled, export=source)
        else:
            pull_argilla(data, files / "argilla", labelled)
    assert not isinstance(caught.value, UnicodeDecodeError)
    assert str(caught.value).startswith(f"{source}: ")


def test_a_good_held_file_is_still_rewritten(files, data):
    """A held file that is JSONL is read, not refused; its pair that this export does not hold
    is kept beside the export's pending one (the file was replaced whole, losing it)."""
    held = files / "held.jsonl"
    held.write_text('{"first": 3, "second": 41, "label": null}\n')
    summary = pull_argilla(data, files / "argilla", files / "l.jsonl", held=held)
    assert (summary.pending, summary.held_kept) == (1, 1)
    assert [json.loads(line)["first"] for line in held.read_text().splitlines()] == [3, 0]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("texts.jsonl", NOISE, "after line 0: not UTF-8 text"),
        ("texts.jsonl", GZIPPED, r"not UTF-8 text .*\(unpack a \.gz first\)"),
        ("texts.jsonl.gz", RECORD, "after line 0: not whole gzip data"),
        ("texts.jsonl.gz", gzip.compress(RECORD)[:-9], "after line 1: not whole gzip data"),
        ("texts.jsonl.gz", gzip.compress(NOISE), "after line 0: not UTF-8 text"),
    ],
    ids=["binary", "gzipped as .jsonl", "plain as .gz", "truncated .gz", "binary .gz"],
)
def test_text_rows_of_a_bad_file_name_it(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as caught:
        read_text_rows(path)
    assert not isinstance(caught.value, (UnicodeDecodeError, OSError))
    assert str(caught.value).startswith(f"{path}, ")


def test_text_rows_of_a_jsonl_gz_file(tmp_path):
    path = tmp_path / "texts.jsonl.gz"
    record = {"prompt": "2+2?", "chosen": "4", "rejected": "5"}
    path.write_bytes(gzip.compress(json.dumps(record).encode() + b"\n\n"))
    rows = read_text_rows(os.fspath(path))
    assert (rows.form, rows.responses, rows.pairs.tolist()) == ("standard", ["4", "5"], [[0, 1]])


DEEP = b"[" * 100_000 + b"]" * 100_000  # past json's recursion limit


def test_json_nested_past_the_parsers_recursion_is_named(files, tmp_path, capsys):
    texts = tmp_path / "texts.jsonl"
    texts.write_bytes(RECORD + DEEP + b"\n")
    with pytest.raises(ValueError, match=r"texts\.jsonl, line 2: nested too deeply to be data"):
        read_text_rows(texts)
    export = files / "export.json"
    export.write_bytes(DEEP)
    assert main(import_args(files, "export.json", "label-studio")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err, err
    assert err.startswith(f"activerm-fast: error: {export}: the Label Studio export is nested too")
