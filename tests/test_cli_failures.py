"""Every command-line failure is one line on stderr naming the file or flag, exit status 2."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from activerm_fast import data
from activerm_fast.cli import main
from activerm_fast.cli import select as select_command
from activerm_fast.model import RewardModel
from activerm_fast.simulation.simulate import usable_cores


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small dataset and the broken files the failures are made of."""
    root = tmp_path_factory.mktemp("bad")
    dataset = root / "small.npz"
    data.synthetic(
        num_train_prompts=12, num_test_prompts=4, test_responses_per_prompt=6, dim=4, seed=1
    ).save(dataset)
    whole = dataset.read_bytes()
    (root / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    (root / "text.npz").write_text("not an archive\n")
    np.save(root / "single.npy", np.zeros((3, 4)))
    model = root / "model.pt"
    RewardModel(4, hidden=(8,)).save(model)
    saved = model.read_bytes()
    (root / "corrupt.pt").write_bytes(saved[:100] + bytes(200) + saved[300:])
    (root / "truncated.pt").write_bytes(saved[: len(saved) // 2])
    (root / "empty.pt").write_bytes(b"")
    torch.save({"not": "a model"}, root / "other.pt")
    RewardModel(7, hidden=(8,)).save(root / "wide.pt")
    (root / "a-file").write_text("")
    (root / "noise.npz").write_bytes(bytes(range(256)) * 4)
    (root / "decided.jsonl").write_text(  # labels enough for select to fit a model
        "".join(
            json.dumps({"first": 2 * i, "second": 2 * i + 1, "label": i % 2}) + "\n"
            for i in range(8)
        )
    )
    # an archive whose header declares 10**11 rows it does not hold: read as declared it
    # would allocate 1.6 TB
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**11, 4)}
    )
    with zipfile.ZipFile(root / "huge.npz", "w") as archive:
        archive.writestr("embeddings.npy", header.getvalue() + bytes(64))
    (root / "labels.jsonl").write_bytes(gzip.compress(b'{"first": 0, "second": 1, "label": 1}\n'))
    return root


def run(args: list[str], capsys) -> tuple[int, str]:
    """Exit status and stderr of the command, however it ended."""
    try:
        code = main(args)
    except SystemExit as exit_info:  # argparse's own errors
        code = exit_info.code
    err = capsys.readouterr().err
    return code, err


def select_args(root, *extra: str) -> list[str]:
    return [
        "select",
        "--data",
        str(root / "small.npz"),
        "--labelled",
        str(root / "none.jsonl"),
        "--k",
        "2",
        "--out",
        str(root / "batch.jsonl"),
        *extra,
    ]


def fitting_args(root, *extra: str) -> list[str]:
    """select's arguments with labels: it fits a model before it chooses."""
    args = select_args(root, *extra)
    args[args.index("--labelled") + 1] = str(root / "decided.jsonl")
    return args


def import_args(root, labelled: str, held: str) -> list[str]:
    """import of a Label Studio export (small.npz stands in for it) into these files."""
    return [
        "import",
        str(root / "small.npz"),
        "--from",
        "label-studio",
        "--data",
        str(root / "small.npz"),
        "--labelled",
        labelled,
        "--held",
        held,
    ]


def simulate_args(root, dataset: str, *extra: str) -> list[str]:
    return ["simulate", "--dataset", str(root / dataset), "--out", str(root / "sim"), *extra]


BAD_INPUTS = {
    "truncated npz": (
        lambda r: simulate_args(r, "truncated.npz", "--no-progress"),
        "truncated.npz: cannot read as a .npz of plain arrays",
    ),
    "text as npz": (
        lambda r: simulate_args(r, "text.npz", "--no-progress"),
        "text.npz: cannot read as a .npz of plain arrays",
    ),
    "single npy": (
        lambda r: simulate_args(r, "single.npy", "--no-progress"),
        "single.npy: cannot read as a .npz of plain arrays (found a single numpy array",
    ),
    "corrupt model": (
        lambda r: select_args(r, "--reuse-model", "--model", str(r / "corrupt.pt")),
        "corrupt.pt is not a saved RewardModel (",
    ),
    "truncated model": (
        lambda r: select_args(r, "--reuse-model", "--model", str(r / "truncated.pt")),
        "truncated.pt is not a saved RewardModel (",
    ),
    "empty model": (
        lambda r: select_args(r, "--reuse-model", "--model", str(r / "empty.pt")),
        "empty.pt is not a saved RewardModel (",
    ),
    "other torch file": (
        lambda r: select_args(r, "--reuse-model", "--model", str(r / "other.pt")),
        "other.pt is not a saved RewardModel",
    ),
    "model of other width": (
        lambda r: select_args(r, "--reuse-model", "--model", str(r / "wide.pt")),
        "wide.pt holds a model of 7-dimensional embeddings, but small has 4-dimensional ones",
    ),
    "reuse without model": (
        lambda r: select_args(r, "--reuse-model"),
        "--reuse-model needs --model",
    ),
    "negative seed": (
        lambda r: select_args(r, "--seed", "-1"),
        "argument --seed: must be a non-negative integer, got -1",
    ),
    "seed not a number": (
        lambda r: select_args(r, "--seed", "x"),
        "argument --seed: must be a non-negative integer, got x",
    ),
    "k not a number": (
        lambda r: select_args(r, "--k", "two"),
        "argument --k: must be a positive integer, got two",
    ),
    "zero beta": (
        lambda r: simulate_args(r, "small.npz", "--beta", "0"),
        "argument --beta: must be a positive number or inf, got 0",
    ),
    "nan beta": (
        lambda r: simulate_args(r, "small.npz", "--beta", "nan"),
        "argument --beta: must be a positive number or inf, got nan",
    ),
    "out is a file": (
        lambda r: [*simulate_args(r, "small.npz"), "--out", str(r / "a-file")],
        "--out " + "{root}/a-file exists and is not a folder",
    ),
    "bytes as npz": (
        lambda r: simulate_args(r, "noise.npz", "--no-progress"),
        "noise.npz: cannot read as a .npz of plain arrays (not a zip archive or a .npy array)",
    ),
    "gzipped labels": (
        lambda r: [*select_args(r)[:3], "--labelled", str(r / "labels.jsonl"), *select_args(r)[5:]],
        "labels.jsonl, after line 0: not UTF-8 text (",
    ),
    "header declaring more than the archive holds": (
        lambda r: simulate_args(r, "huge.npz", "--no-progress"),
        "huge.npz: cannot read as a .npz of plain arrays (embeddings: its header declares "
        "shape (100000000000, 4) of float32 (1,600,000,000,000 bytes) but the archive holds 64",
    ),
    "model file under a file": (
        lambda r: select_args(r, "--model", str(r / "a-file" / "model.pt")),
        "--model {root}/a-file/model.pt: {root}/a-file is a file, not a folder",
    ),
    "batch under a file": (
        lambda r: [*select_args(r)[:-2], "--out", str(r / "a-file" / "deeper" / "b.jsonl")],
        "--out {root}/a-file/deeper/b.jsonl: {root}/a-file is a file, not a folder",
    ),
    "model and batch one new file": (
        lambda r: [*fitting_args(r)[:-2], "--model", str(r / "new.x"), "--out", str(r / "new.x")],
        "--out and --model name the same file, {root}/new.x: writing --out would overwrite it",
    ),
    "batch into the labels yet to be made": (
        lambda r: [*select_args(r)[:-2], "--out", str(r / "none.jsonl")],
        "--out and --labelled name the same file, {root}/none.jsonl",
    ),
    "model file a folder": (
        lambda r: fitting_args(r, "--model", str(r)),
        "--model {root} is a folder: name a file in it",
    ),
    "empty batch path": (
        lambda r: [*select_args(r)[:-2], "--out", ""],
        "--out is empty: name the file to write",
    ),
    "labels and held one new file": (
        lambda r: import_args(r, str(r / "pulled.jsonl"), str(r / "pulled.jsonl")),
        "--labelled and --held name the same file, {root}/pulled.jsonl",
    ),
    "members beyond what a selection takes": (  # refused before the fit, not after it
        lambda r: fitting_args(r, "--ensemble", "65"),
        "argument --ensemble: must be at most 64, the members a selection takes, got 65",
    ),
    "missing dataset": (
        lambda r: simulate_args(r, "missing.npz"),
        "no dataset named",
    ),
    "more ranks than cores": (  # a typo's 10**20 processes would never start
        lambda r: select_args(r, "--processes", "99999999999999999999"),
        "--processes 99999999999999999999 is more than the "
        f"{usable_cores()} cores this process may use",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_ends_in_one_line_naming_the_file_or_flag(case, files, capsys):
    make_args, message = BAD_INPUTS[case]
    code, err = run(make_args(files), capsys)
    assert code == 2
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert message.format(root=files) in err


# the commands the cases below add one option to
TRL_EXPORT = ["export", "--labelled", "{root}/decided.jsonl", "--out", "{out}"]


def sent_to(tool: str) -> list[str]:
    return ["export", "--to", tool, "--batch", "{root}/decided.jsonl", "--out", "{out}"]


# an option the command would not use: refused before any work, naming it and why
IGNORED_OPTIONS = {
    "a tool's option in a TRL export": (
        [*TRL_EXPORT, "--no-tie"],
        "--no-tie is an annotation tool's (--to label-studio or argilla): a TRL export",
    ),
    "a server in a TRL export": (
        [*TRL_EXPORT, "--url", "http://x"],
        "--url is an annotation tool's",
    ),
    "a TRL option sending a batch": (
        sent_to("argilla") + ["--form", "implicit"],
        "--form is a TRL export's (--to trl): --to argilla sends --batch",
    ),
    "a server for an Argilla folder": (
        sent_to("argilla") + ["--project", "p"],
        "--project is a Label Studio server's: --to argilla writes a folder",
    ),
    "a server for an import file": (
        sent_to("label-studio") + ["--token", "t"],
        "--token pushes to a server and --out writes an import file: give one of them",
    ),
    "an Argilla name for Label Studio": (
        sent_to("label-studio") + ["--name", "mine"],
        "--name names an Argilla dataset: --to label-studio has none",
    ),
    "a tool's option in a TRL import": (
        ["import", "{root}/decided.jsonl", "--out", "{out}", "--labelled", "{root}/l.jsonl"],
        "--labelled is an annotation tool's (--from label-studio or argilla): a TRL import",
    ),
    "a TRL option pulling labels": (
        ["import", "--from", "argilla", "{root}", "--labelled", "{out}", "--batch-size", "8"],
        "--batch-size is a TRL import's (--from trl): --from argilla merges labels",
    ),
    "a server and an export file": (
        ["import", "--from", "label-studio", "{root}/decided.jsonl", "--labelled", "{out}"]
        + ["--project", "p"],
        "--project pulls from a server and source is an export file: give one of them",
    ),
    "a fitted model's option with the reward head": (
        ["select", "--labelled", "{root}/decided.jsonl", "--k", "2", "--out", "{out}"]
        + ["--reward-head", "--precision", "bfloat16"],
        "--precision is for a model select fits: --reward-head selects with the reward model's",
    ),
}


@pytest.mark.parametrize("case", sorted(IGNORED_OPTIONS))
def test_an_option_the_command_would_ignore_is_refused(case, files, tmp_path, capsys):
    words, message = IGNORED_OPTIONS[case]
    out = tmp_path / "out.jsonl"
    args = [word.format(root=files, out=out) for word in words]
    if args[0] != "import" or "--from" in args:  # a TRL import takes no --data
        args[1:1] = ["--data", str(files / "small.npz")]
    code, err = run(args, capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_broken_matplotlib_fails_before_any_work(files, tmp_path, capsys, monkeypatch):
    for module in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, module, None)  # import of matplotlib fails
    monkeypatch.delitem(sys.modules, "activerm_fast.simulation.plot", raising=False)
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("work started"))
    out = tmp_path / "sim"
    code, err = run(simulate_args(files, "small.npz", "--out", str(out)), capsys)
    assert code == 2 and err.count("\n") == 1
    assert "activerm-fast: error: cannot import matplotlib to plot the results" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "extra",
    [
        ("--pool", "cross", "--strategies", "max-min"),
        ("--ensemble", "65"),
        ("--per-round", "100000"),
    ],
)
def test_a_simulation_refused_up_front_prints_only_the_refusal(extra, files, capsys):
    """The run's header line comes after the checks: a refused command prints no header."""
    try:
        code = main(simulate_args(files, "small.npz", "--no-progress", *extra))
    except SystemExit as exit_info:
        code = exit_info.code
    printed = capsys.readouterr()
    assert code == 2 and printed.out == ""
    assert printed.err.startswith("activerm-fast: error: ") and printed.err.count("\n") == 1


def test_internal_errors_are_one_line_too(files, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("first line\nsecond line")

    monkeypatch.setattr(select_command, "_choose", broken)
    code, err = run(select_args(files), capsys)
    assert code == 2 and err.count("\n") == 1
    assert "internal error: RuntimeError: first line second line" in err
    monkeypatch.setenv("ACTIVERM_FAST_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="first line"):
        main(select_args(files))


@pytest.mark.parametrize("case", ["truncated npz", "corrupt model", "negative seed"])
def test_python_dash_m_entry_point_prints_no_traceback(case, files):
    make_args, message = BAD_INPUTS[case]
    result = subprocess.run(
        [sys.executable, "-m", "activerm_fast", *make_args(files)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "default"},
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert message in result.stderr


def _labelled_file(root) -> tuple[str, bytes]:
    """A labelled file of two decided pairs of small.npz, and its bytes."""
    path = root / "labels-kept.jsonl"
    path.write_text(
        json.dumps({"first": 0, "second": 1, "label": 1})
        + "\n"
        + json.dumps({"first": 2, "second": 3, "label": 0})
        + "\n"
    )
    return str(path), path.read_bytes()


@pytest.mark.parametrize(
    "command",
    [
        # select's batch over its own labels
        lambda r, f: [*select_args(r)[:-2], "--labelled", f, "--out", f],
        # a TRL export over the labels it reads
        lambda r, f: ["export", "--data", str(r / "small.npz"), "--labelled", f, "--out", f],
        # a Label Studio task file over the batch it is made of
        lambda r, f: [
            "export",
            "--to",
            "label-studio",
            "--data",
            str(r / "small.npz"),
            "--batch",
            f,
            "--out",
            f,
        ],  # fmt: skip
        # a tool's ties held over the labels they are merged into
        lambda r, f: import_args(r, f, f),
    ],
    ids=["select", "export", "export to label-studio", "import held"],
)
def test_an_output_naming_an_input_file_is_refused_and_the_file_kept(command, files, capsys):
    path, before = _labelled_file(files)
    code, err = run(command(files, path), capsys)
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert "name the same file" in err and "would overwrite it" in err, err
    assert open(path, "rb").read() == before  # the labels are untouched


def test_the_folders_of_new_outputs_are_made_before_the_fit(files, tmp_path, capsys):
    model, batch = tmp_path / "models" / "round-1" / "model.pt", tmp_path / "batches" / "b.jsonl"
    args = fitting_args(files, "--model", str(model))
    args[args.index("--out") + 1] = str(batch)
    code, err = run(args, capsys)
    assert code == 0, err
    assert RewardModel.load(model).input_dim == 4
    assert len(batch.read_text().splitlines()) == 2
