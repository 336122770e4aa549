"""Bad input to the data and metric functions at every scale: one clear error naming the
argument (never a NumPy, OS or datasets message, never a file written somewhere else)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from activerm_fast import data, export_preferences, from_arrays, load, load_preferences
from activerm_fast.cli import main
from activerm_fast.data import dataset as dataset_module
from activerm_fast.metrics import best_of_n, within_prompt_spearman

SMALL = {"num_train_prompts": 12, "num_test_prompts": 4, "test_responses_per_prompt": 6, "dim": 4}


@pytest.fixture(scope="module")
def small():
    return data.synthetic(**SMALL)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


# ---- Dataset.save writes exactly the file named ---------------------------------------------


def test_save_writes_exactly_the_path_given(small, tmp_path):
    for path in (tmp_path / "a.npz", str(tmp_path / "b.npz")):
        small.save(path)
        assert load(path).n == small.n
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz"]


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("", ValueError, "path is empty"),
        ("x", ValueError, r"path must end in \.npz \(the file load reads\), got 'x'"),
        ("/dev/null", ValueError, r"path must end in \.npz .*got '/dev/null'"),
        (b"p.npz", TypeError, "path must be a str or os.PathLike, got bytes"),
        (5, TypeError, "path must be a str or os.PathLike, got int"),
        (None, TypeError, "path must be a str or os.PathLike, got NoneType"),
    ],
)
def test_save_refuses_paths_numpy_would_change(small, path, error, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=message):
        small.save(path)
    assert os.listdir(tmp_path) == []  # nothing written anywhere (numpy wrote x.npz, .npz)


def test_save_refuses_an_existing_folder(small, tmp_path):
    for folder in (tmp_path / "out", tmp_path / "out.npz"):
        folder.mkdir()
        with pytest.raises(
            ValueError, match=f"path {re.escape(str(folder))} is an existing folder"
        ):
            small.save(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.npz"]
    assert not any((tmp_path / "out.npz").iterdir())


# ---- export never writes among other files ----------------------------------------------------


@pytest.fixture
def labelled(tmp_path):
    """An annotation file of one within-prompt pair of arena-bench."""
    path = tmp_path / "L.jsonl"
    path.write_text(json.dumps({"first": 0, "second": 1, "label": 1}) + "\n")
    return path


def export_args(labelled: Path, out: str) -> list[str]:
    return ["export", "--data", "arena-bench", "--labelled", str(labelled), "--out", out]


def test_cli_export_refuses_an_empty_out(labelled, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(export_args(labelled, "")) == 2
    assert one_line_error(capsys) == "activerm-fast: error: --out is empty; name a file or folder"
    assert os.listdir(tmp_path) == ["L.jsonl"]


def test_cli_export_refuses_a_folder_of_other_files(labelled, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    assert main(export_args(labelled, str(folder))) == 2
    assert one_line_error(capsys) == (
        f"activerm-fast: error: --out {folder} is an existing folder that holds other files; "
        "name a new folder or a .jsonl/.parquet file"
    )
    assert os.listdir(folder) == ["notes.txt"]
    assert main(export_args(labelled, "/dev/null")) == 2
    assert "--out /dev/null is an existing file without a suffix" in one_line_error(capsys)


def test_export_replaces_its_own_previous_folder_whole(tmp_path):
    pytest.importorskip("datasets", reason="datasets folders need datasets")
    arena = load("arena-bench")
    a, b, c = np.flatnonzero(arena.prompt_ids == 0)[:3]
    out = tmp_path / "prefs"
    export_preferences(arena, [[a, b], [b, c]], [1, 0], out)
    (out / "data-00001-of-00002.arrow").write_bytes(b"a stale shard of a larger export")
    export_preferences(arena, [[a, c]], [1], out, embeddings=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "data-00000-of-00001.arrow",
        "dataset_info.json",
        "state.json",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prefs"]  # no staging folder left
    back = load_preferences(out)
    assert back.responses == [arena.responses[a], arena.responses[c]]


def test_export_api_refuses_an_occupied_or_empty_path(tmp_path):
    arena = load("arena-bench")
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="path .* is an existing folder that holds other files"):
        export_preferences(arena, [[0, 1]], [1], tmp_path)
    with pytest.raises(ValueError, match="path is empty"):
        export_preferences(arena, [[0, 1]], [1], "")
    assert os.listdir(tmp_path) == ["notes.txt"]


# ---- a folder that datasets cannot read ---------------------------------------------------


def test_a_plain_folder_as_a_dataset_is_named_as_such(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a dataset")
    message = (
        f"{tmp_path}: not a datasets.save_to_disk folder (no dataset_info.json/state.json); give "
        "arena-bench, synthetic, a .npz, .jsonl or .parquet file or such a folder"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load_preferences(tmp_path)
    args = ["simulate", "--dataset", str(tmp_path), "--rounds", "1", "--seeds", "1"]
    assert main([*args, "--strategies", "random", "--out", str(tmp_path / "out")]) == 2
    assert one_line_error(capsys) == f"activerm-fast: error: {message}"


# ---- synthetic: sizes and scales ----------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [
        {"num_train_prompts": 10**18},
        {"num_train_prompts": 2**63},
        {"responses_per_prompt": 10**18},
        {"dim": 2**63},
        {"num_test_prompts": 10**400},
        {"dim": 10**6, "kind": "realistic"},  # a (dim, dim) basis of 8 TB
    ],
)
def test_synthetic_beyond_the_memory_is_refused_before_any_draw(option):
    with pytest.raises(
        ValueError, match=r"^synthetic data of about \d+ responses of dim \d+ holds"
    ):
        data.synthetic(**option)


def test_synthetic_size_is_checked_against_the_memory_available(monkeypatch):
    monkeypatch.setattr(dataset_module, "available_memory", lambda: 2**20)
    with pytest.raises(ValueError, match=r"need about [\d.]+ GiB .* than the 0.0 GiB of memory"):
        data.synthetic()  # 4,560 responses of dim 32: 12 MB
    assert data.synthetic(**SMALL).n == 12 * 10 + 4 * 6  # 100 KB fits


@pytest.mark.parametrize("kind", ["isotropic", "realistic"])
def test_response_spread_outside_what_float32_resolves_is_refused(kind):
    for spread in (1e308, 1e154, 1e7, 1e-7, 1e-300):
        with pytest.raises(ValueError, match=r"response_spread must be in \[1e-06, 1e\+06\], got"):
            data.synthetic(**SMALL, response_spread=spread, kind=kind)
    for spread in (1e-6, 1e6):  # the bounds: finite gold, both structures resolved
        made = data.synthetic(**SMALL, response_spread=spread, kind=kind)
        assert np.isfinite(made.gold).all() and np.isfinite(made.embeddings).all()
        rows = made.embeddings[made.prompt_ids == 0]
        assert (rows.std(axis=0) > 0).all()  # the responses' offsets survive float32
        assert made.prompt_features().std(axis=0).min() > 0  # and the prompts' centres


def test_a_realistic_exponent_beyond_the_float32_spectrum_is_refused():
    for exponent in (1e308, 8.0):
        with pytest.raises(ValueError, match=r"exponent must be at most 7.97 for dim=32, got"):
            data.synthetic(kind="realistic", exponent=exponent)
    made = data.synthetic(**SMALL | {"dim": 32}, kind="realistic", exponent=12 / np.log10(32))
    assert np.isfinite(made.gold).all()
    with pytest.raises(TypeError, match="exponent must be a number, got str '1'"):
        data.synthetic(kind="realistic", exponent="1")
    with pytest.raises(TypeError, match="duplicate_fraction must be a number, got str '0.1'"):
        data.synthetic(kind="realistic", duplicate_fraction="0.1")


def test_the_default_reward_directions_is_named_as_the_default():
    for dim in (1, 2):
        with pytest.raises(
            ValueError,
            match=rf"^dim={dim} is below the default reward_directions=3; pass "
            "reward_directions<=dim$",
        ):
            data.synthetic(kind="realistic", dim=dim)
    assert data.synthetic(**SMALL | {"dim": 1}, kind="realistic", reward_directions=1).dim == 1


# ---- test_fraction ---------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", ["0.2", None, True, [0.2]])
def test_a_test_fraction_that_is_no_number_is_a_type_error(small, fraction):
    with pytest.raises(TypeError, match=r"^test_fraction must be a number, got "):
        from_arrays(small.embeddings, small.prompt_ids, test_fraction=fraction)
    with pytest.raises(TypeError, match=r"^test_fraction must be a number, got "):
        small.with_split(fraction)


def test_embed_texts_checks_the_split_before_embedding(tmp_path):
    class Refuses:
        def encode(self, texts, **options):
            raise AssertionError("embedded before the split was checked")

    path = tmp_path / "texts.jsonl"
    path.write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n")
    with pytest.raises(TypeError, match="test_fraction must be a number, got str"):
        data.embed_texts(path, Refuses(), test_fraction="0.2")
    with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\), got 1"):
        data.embed_texts(path, Refuses(), test_fraction=1)


# ---- metrics --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grouped():
    made = data.synthetic(3, 4, 1, 4, dim=4)
    return made.gold, made.prompt_ids


def test_best_of_n_takes_any_n_beyond_the_prompts_as_each_prompts_best(grouped):
    gold, ids = grouped
    pred = gold[::-1].copy()
    for repeats in (None, 3):
        whole = best_of_n(pred, gold, ids, ns=(4,), repeats=repeats)[4]
        for n in (5, 2**63 - 1, 2**63, 2**64, 10**400):
            assert best_of_n(pred, gold, ids, ns=(n,), repeats=repeats) == {n: whole}


def test_spearman_names_the_input_whose_length_disagrees(grouped):
    gold, ids = grouped
    for args, name, others in [
        ((gold[:3], gold, ids), "pred", "gold and prompt_ids"),
        ((gold, gold[:3], ids), "gold", "pred and prompt_ids"),
        ((gold, gold, ids[:3]), "prompt_ids", "pred and gold"),
    ]:
        message = rf"^{name} must have shape \(n,\) = \(16,\) like {others}, got \(3,\)$"
        with pytest.raises(ValueError, match=message):
            within_prompt_spearman(*args)
        with pytest.raises(ValueError, match=message):
            best_of_n(*args)
    with pytest.raises(ValueError, match=r"pred \(3,\), gold \(5,\), prompt_ids \(16,\)$"):
        within_prompt_spearman(gold[:3], gold[:5], ids)


def test_metrics_take_string_prompt_ids_as_select_does(grouped, rng):
    gold, ids = grouped
    pred = gold + rng.normal(size=gold.size)
    names = np.array([f"prompt {p}" for p in ids])
    assert within_prompt_spearman(pred, gold, names) == within_prompt_spearman(pred, gold, ids)
    assert within_prompt_spearman(pred, gold, names.tolist()) == within_prompt_spearman(
        pred, gold, ids
    )
    assert best_of_n(pred, gold, names) == best_of_n(pred, gold, ids)
    with pytest.raises(
        TypeError, match="prompt_ids must hold integers or strings, got dtype float"
    ):
        within_prompt_spearman(pred, gold, ids.astype(float))
