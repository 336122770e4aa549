"""Argilla 2.x through the folder of ``Dataset.to_disk``/``from_disk``, offline: the files written
are read with the ``argilla`` SDK's own models and record reader, annotators' responses are
added with its ``Response`` and written with the record writer ``to_disk`` uses, then pulled.
(The SDK's client connects to a server when created, and a server needs Elasticsearch, so the
part that uploads the folder, ``Dataset.from_disk``, is not run here.)"""

from __future__ import annotations

import doctest
import json
import os
import uuid

import numpy as np
import pytest

from activerm_fast.cli import main
from activerm_fast.data import annotation_tools, argilla, label_studio, load, synthetic
from activerm_fast.data.annotation import read_labelled, write_batch
from activerm_fast.data.annotation_tools import pair_id
from activerm_fast.data.argilla import (
    DATASET_FILE,
    RECORDS_FILE,
    SETTINGS_FILE,
    argilla_settings,
    pull_argilla,
    write_argilla,
)
from activerm_fast.data.preference_data import read_annotations

if os.environ.get("CI") == "true":  # CI installs the extra: its absence is a failure there
    import argilla as rg
else:
    rg = pytest.importorskip("argilla", reason="pip install 'activerm_fast[annotation]'")

from argilla._models import DatasetModel  # noqa: E402
from argilla._models._settings._fields import FieldModel  # noqa: E402
from argilla._models._settings._metadata import MetadataFieldModel  # noqa: E402
from argilla._models._settings._questions import QuestionModel  # noqa: E402
from argilla.records._io._json import JsonIO  # noqa: E402


@pytest.fixture(scope="module")
def data():
    full = load("arena-bench")
    return full.subset(full.prompt_ids < 6)


def annotate(folder, out, answers: dict[str, list[tuple[str, str | None, str]]]):
    """Add ``answers`` (pair id -> [(user, value[, status])], status "submitted" by default,
    "discarded" for no value) to the records of ``folder`` with the SDK and write them as
    ``Dataset.to_disk`` does, into ``out``, each record "completed" as the server marks it once
    it has a submitted response (the batch asks for one), else "pending"."""
    records = JsonIO._records_from_json(folder / RECORDS_FILE)
    users = {}
    for record in records:
        submitted = False
        for user, value, *given in answers.get(record.id, []):
            status = given[0] if given else "discarded" if value is None else "submitted"
            submitted |= status == "submitted"
            user_id = users.setdefault(user, uuid.uuid4())
            record.responses.add(
                rg.Response(question_name="preference", value=value, user_id=user_id, status=status)
            )
        record._model.status = "completed" if submitted else "pending"
    out.mkdir()
    JsonIO.to_json(records, out / RECORDS_FILE)


def test_the_folder_is_what_the_sdk_reads(data, tmp_path):
    batch = np.array([[0, 20], [3, 41], [7, 8]])
    folder = tmp_path / "batch"
    assert write_argilla(data, batch, folder, scores=[3.0, 2.0, 0.5], annotators=2) == 3
    settings = json.loads((folder / SETTINGS_FILE).read_text())
    for item in settings["fields"]:
        FieldModel(**item)
    for item in settings["metadata"]:
        MetadataFieldModel(**item)
    (question,) = [QuestionModel(**item) for item in settings["questions"]]
    assert [o["value"] for o in question.settings.options] == ["first", "second", "tie"]
    model = DatasetModel(**json.loads((folder / DATASET_FILE).read_text()))
    assert model.distribution.min_submitted == 2
    assert settings == argilla_settings(annotators=2)

    records = JsonIO._records_from_json(folder / RECORDS_FILE)
    assert [r.id for r in records] == [pair_id(data, i, j) for i, j in batch.tolist()]
    first = records[0]
    assert first.fields["first_response"] == data.responses[0]
    assert first.fields["second_prompt"] == data.prompts[data.prompt_ids[20]]
    assert (first.metadata["score"], first.metadata["rank"], first.metadata["first"]) == (3.0, 1, 0)
    # the SDK writes back what it read: the records are in its own format
    assert [r.to_dict() for r in records] == json.loads((folder / RECORDS_FILE).read_text())


def test_responses_come_back_into_the_labelled_file(data, tmp_path):
    batch = np.array([[0, 20], [3, 41], [7, 8], [9, 30], [10, 11]])
    ids = [pair_id(data, i, j) for i, j in batch.tolist()]
    folder, annotated = tmp_path / "batch", tmp_path / "annotated"
    write_argilla(data, batch, folder)
    annotate(
        folder,
        annotated,
        {
            ids[0]: [("ann", "first"), ("bob", "first")],
            ids[1]: [("ann", "second")],
            ids[2]: [("ann", "first"), ("bob", "second")],  # disagreement: a tie
            ids[3]: [("ann", None)],  # discarded
        },
    )
    labelled = tmp_path / "labelled.jsonl"
    summary = pull_argilla(data, annotated, labelled)
    assert (summary.labelled_new, summary.ties, summary.skipped, summary.pending) == (2, 1, 1, 1)
    pairs, labels = read_labelled(labelled, data.n)
    assert pairs.tolist() == batch[:2].tolist() and labels.tolist() == [1, 0]
    held_pairs, held_labels = read_annotations(summary.held, data.n)
    assert held_pairs.tolist() == batch[2:].tolist()
    assert held_labels[0] == 0.5 and np.isnan(held_labels[1:]).all()

    before = labelled.read_bytes(), summary.held.read_bytes()
    again = pull_argilla(data, annotated / RECORDS_FILE, labelled)
    assert (again.labelled_new, again.labelled_already) == (0, 2)
    assert (labelled.read_bytes(), again.held.read_bytes()) == before


def test_answers_of_a_pending_record_are_drafts(data, tmp_path):
    """to_disk writes no response's status: a value in a record still "pending" was a draft,
    or discarded, and is held, not labelled (a draft "first" became label 1); the record's
    submitted answer counts once it is "completed"."""
    batch = np.array([[0, 20], [3, 41], [5, 6]])
    ids = [pair_id(data, i, j) for i, j in batch.tolist()]
    folder = tmp_path / "batch"
    write_argilla(data, batch, folder)
    drafts = {ids[0]: [("ann", "first", "draft")], ids[2]: [("ann", "first", "discarded")]}
    annotate(folder, tmp_path / "drafts", {**drafts, ids[1]: [("ann", "second")]})
    on_disk = json.loads((tmp_path / "drafts" / RECORDS_FILE).read_text())
    assert [r["status"] for r in on_disk] == ["pending", "completed", "pending"]
    assert [list(r["responses"]["preference"][0]) for r in on_disk] == [["value", "user_id"]] * 3
    labelled = tmp_path / "labelled.jsonl"
    summary = pull_argilla(data, tmp_path / "drafts", labelled)
    assert (summary.labelled_new, summary.pending) == (1, 2)
    assert read_labelled(labelled, data.n)[0].tolist() == [[3, 41]]
    annotate(folder, tmp_path / "done", {ids[0]: [("ann", "first")], ids[1]: [("ann", "second")]})
    summary = pull_argilla(data, tmp_path / "done", labelled)
    assert (summary.labelled_new, summary.labelled_already) == (1, 1)
    pairs, labels = read_labelled(labelled, data.n)
    assert pairs.tolist() == [[3, 41], [0, 20]] and labels.tolist() == [0, 1]


def test_malformed_records_are_named(data, tmp_path):
    folder = tmp_path / "batch"
    write_argilla(data, np.array([[0, 20]]), folder)
    records = json.loads((folder / RECORDS_FILE).read_text())
    record_id = records[0]["id"]
    records[0]["responses"] = {"preference": [{"value": "left", "user_id": "u"}]}
    (folder / RECORDS_FILE).write_text(json.dumps(records))
    with pytest.raises(ValueError, match=f"record '{record_id}': a 'preference' response must be"):
        pull_argilla(data, folder, tmp_path / "l.jsonl")
    records[0]["responses"] = {}
    # rows swapped against the texts shown (the id is the same either way round)
    swapped = {**records[0]["metadata"], "first": 20, "second": 0}
    (folder / RECORDS_FILE).write_text(json.dumps([{**records[0], "metadata": swapped}]))
    with pytest.raises(ValueError, match=f"record '{record_id}': the responses shown are in the "):
        pull_argilla(data, folder, tmp_path / "l.jsonl")
    records[0]["metadata"]["first"] = 1
    (folder / RECORDS_FILE).write_text(json.dumps(records))
    with pytest.raises(ValueError, match="is not the id of rows 1 and 20"):
        pull_argilla(data, folder, tmp_path / "l.jsonl")
    with pytest.raises(ValueError, match="has no response texts"):
        write_argilla(synthetic(), np.array([[0, 1]]), tmp_path / "x")
    assert not (tmp_path / "l.jsonl").exists()


def test_command_line(tmp_path, capsys):
    batch, folder = tmp_path / "batch.jsonl", tmp_path / "argilla"
    write_batch(batch, load("arena-bench"), np.array([[0, 20], [3, 41]]))
    args = ["export", "--to", "argilla", "--data", "arena-bench", "--batch", str(batch)]
    assert main([*args, "--out", str(folder), "--no-tie"]) == 0
    assert "wrote 2 records" in capsys.readouterr().out
    labels = json.loads((folder / SETTINGS_FILE).read_text())["questions"][0]["settings"]
    assert [o["value"] for o in labels["options"]] == ["first", "second"]
    labelled = tmp_path / "labelled.jsonl"
    pull = ["import", str(folder), "--from", "argilla", "--data", "arena-bench"]
    assert main([*pull, "--labelled", str(labelled)]) == 0
    assert "2 pending" in capsys.readouterr().out
    assert main(pull) == 2
    assert "--from argilla needs --labelled" in capsys.readouterr().err


@pytest.mark.parametrize("module", [annotation_tools, argilla, label_studio])
def test_docstring_examples_run(module):
    """The examples of the adapters' docstrings (those needing a server or SDK client skip)."""
    assert doctest.testmod(module).failed == 0
