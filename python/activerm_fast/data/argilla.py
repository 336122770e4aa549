"""Argilla 2.x, both ways, through the folder of ``Dataset.to_disk`` / ``Dataset.from_disk``.

Out (:func:`write_argilla`): the folder holds ``.argilla/settings.json`` (text fields
``first_prompt``, ``first_response``, ``second_prompt``, ``second_response``; a label question
``preference`` with the values ``first``, ``second`` and optionally ``tie``; metadata
``pair_id``, ``first``, ``second``, ``rank`` and ``score``, the selection gain, to sort and
filter the queue by), ``.argilla/dataset.json`` and ``records.json``, one record per pair
whose ``id`` is the pair's id. ``rg.Dataset.from_disk(folder, client=client)`` creates the
dataset on a server; a later batch goes into the same dataset with
``dataset.records.from_json(folder / "records.json")``, which upserts by record id, so a
record pushed twice is still one record.

Back (:func:`pull_argilla`): the annotated dataset written by ``dataset.to_disk(folder)``
(or its ``records.json``): each user's response to ``preference`` is their vote; a response
with no value, or with ``"status"`` other than ``"submitted"`` where the file carries one
(``to_disk`` writes only value and user id), counts as skipped, drafts as no answer. The votes
go through :func:`~activerm_fast.data.annotation_tools.merge_pull` as for Label Studio.

Files are read and written with the standard library in the layout of the ``argilla`` SDK
2.8, so neither direction needs the SDK installed; tests/test_argilla.py checks the files
with the SDK's own models and record reader.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .annotation_tools import (
    FIRST,
    SECOND,
    TIE,
    VOTES,
    PullSummary,
    ToolPair,
    item_records,
    merge_pull,
    tool_pair,
)
from .dataset import Dataset
from .json_files import json_document

QUESTION = "preference"
LABELS = {FIRST: "Left is better", SECOND: "Right is better", TIE: "Tie"}
FIELDS = {
    "first_prompt": ("Left: prompt", "first_prompt_text"),
    "first_response": ("Left: response", "first_text"),
    "second_prompt": ("Right: prompt", "second_prompt_text"),
    "second_response": ("Right: response", "second_text"),
}
# metadata name -> (Argilla type, shown to annotators)
METADATA = {
    "pair_id": ("terms", False),
    "first": ("integer", False),
    "second": ("integer", False),
    "rank": ("integer", True),
    "score": ("float", True),
}
GUIDELINES = (
    "Read both prompts and responses. Choose the better response: left or right "
    "(or tie when neither is better). Discard a pair you cannot judge."
)
SETTINGS_FILE = ".argilla/settings.json"
DATASET_FILE = ".argilla/dataset.json"
RECORDS_FILE = "records.json"


def argilla_settings(ties: bool = True, annotators: int = 1) -> dict[str, Any]:
    """The dataset settings as ``rg.Settings.serialize()`` writes them (``settings.json``).

    Parameters
    ----------
    ties : bool, default True
        Offer "Tie" among the labels.
    annotators : int, default 1
        Submitted responses a record needs to be completed (the ``overlap`` distribution).

    Returns
    -------
    dict

    Examples
    --------
    >>> [o["value"] for o in argilla_settings(ties=False)["questions"][0]["settings"]["options"]]
    ['first', 'second']
    """
    if isinstance(annotators, bool) or not isinstance(annotators, int) or annotators < 1:
        raise ValueError(f"annotators must be a positive integer, got {annotators!r}")
    options = [
        {"text": text, "value": value} for value, text in LABELS.items() if ties or value != TIE
    ]
    resource = {"id": None, "inserted_at": None, "updated_at": None, "dataset_id": None}
    fields = [
        {
            **resource,
            "name": name,
            "settings": {"type": "text", "use_markdown": True},
            "title": title,
            "required": True,
            "description": None,
            "type": "text",
        }
        for name, (title, _) in FIELDS.items()
    ]
    question = {
        **resource,
        "name": QUESTION,
        "settings": {
            "type": "label_selection",
            "options": options,
            "visible_options": len(options),
        },
        "title": "Which response is better?",
        "description": None,
        "required": True,
        "type": "label_selection",
    }
    metadata = []
    for name, (kind, visible) in METADATA.items():
        bounds = {"values": None} if kind == "terms" else {"min": None, "max": None}
        metadata.append(
            {
                **resource,
                "name": name,
                "settings": {"visible_for_annotators": visible, **bounds, "type": kind},
                "title": name,
                "visible_for_annotators": visible,
            }
        )
    return {
        "guidelines": GUIDELINES,
        "questions": [question],
        "fields": fields,
        "vectors": [],
        "metadata": metadata,
        "allow_extra_metadata": False,
        "distribution": {"strategy": "overlap", "min_submitted": annotators},
        "mapping": None,
    }


def write_argilla(
    dataset: Dataset,
    pairs: Any,
    folder: str | os.PathLike[str],
    *,
    name: str = "activerm-fast",
    scores: Any | None = None,
    ties: bool = True,
    annotators: int = 1,
) -> int:
    """Write ``pairs`` as an Argilla dataset folder, the layout of ``Dataset.to_disk``.

    Parameters
    ----------
    dataset : Dataset
        The dataset the pairs index, with response texts.
    pairs : array_like
        (k, 2) rows in the order they were chosen.
    folder : path
        The folder to write (created; the three files are replaced if there).
    name : str, default "activerm-fast"
        The dataset's name on the server.
    scores : array_like, optional
        (k,) selection gains for the ``score`` metadata; without them the score falls with the
        rank.
    ties, annotators
        As :func:`argilla_settings`.

    Returns
    -------
    int
        The number of records written.

    Raises
    ------
    ValueError
        As :func:`~activerm_fast.data.annotation_tools.item_records`, or for an empty name.

    Examples
    --------
    >>> import tempfile
    >>> from activerm_fast.data import load
    >>> folder = tempfile.mkdtemp()
    >>> write_argilla(load("arena-bench"), [[0, 20], [3, 41]], folder)
    2
    >>> rg.Dataset.from_disk(folder, client=client)  # uploads it  # doctest: +SKIP
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    settings = argilla_settings(ties, annotators)
    records = [
        {
            "id": record["pair_id"],
            "fields": {field: record[key] for field, (_, key) in FIELDS.items()},
            "metadata": {key: record[key] for key in METADATA},
            "suggestions": {},
            "responses": {},
            "vectors": {},
            "status": "pending",
            "_server_id": None,
        }
        for record in item_records(dataset, pairs, scores, tool="Argilla")
    ]
    model = {
        "id": None,
        "inserted_at": None,
        "updated_at": None,
        "name": name.strip(),
        "status": "draft",
        "guidelines": settings["guidelines"],
        "allow_extra_metadata": settings["allow_extra_metadata"],
        "distribution": settings["distribution"],
        "workspace_id": None,
        "last_activity_at": None,
    }
    root = Path(folder)
    (root / ".argilla").mkdir(parents=True, exist_ok=True)
    for relative, value in (
        (SETTINGS_FILE, settings),
        (DATASET_FILE, model),
        (RECORDS_FILE, records),
    ):
        (root / relative).write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return len(records)


def pull_argilla(
    dataset: Dataset,
    source: str | os.PathLike[str],
    labelled: str | os.PathLike[str],
    *,
    held: str | os.PathLike[str] | None = None,
) -> PullSummary:
    """Merge the responses of an annotated Argilla dataset into the labelled file.

    Parameters
    ----------
    dataset : Dataset
        The dataset the records' pairs index.
    source : path
        A folder written by ``Dataset.to_disk`` or its ``records.json``.
    labelled, held : path
        As :func:`~activerm_fast.data.annotation_tools.merge_pull`.

    Returns
    -------
    PullSummary
        What :func:`~activerm_fast.data.annotation_tools.merge_pull` made of the records'
        responses.

    Raises
    ------
    ValueError
        Naming the file and record: a malformed file, a response value that is not a label
        of the question, a record pushed from another dataset.

    Examples
    --------
    >>> dataset.to_disk("annotated")  # doctest: +SKIP
    >>> pull_argilla(data, "annotated", "labelled.jsonl")  # doctest: +SKIP
    """
    path = Path(source)
    if path.is_dir():
        path = path / RECORDS_FILE
    records = json_document(path, "Argilla records file")
    return merge_pull(dataset, _pairs_of_records(dataset, records, str(path)), labelled, held)


def _pairs_of_records(dataset: Dataset, records: Any, source: str) -> Iterator[ToolPair]:
    if not isinstance(records, list):
        raise ValueError(f"{source}: expected a JSON list of records, got {type(records).__name__}")
    for position, record in enumerate(records):
        record_id = record.get("id") if isinstance(record, dict) else None
        where = f"{source}: record {record_id!r}" if record_id else f"{source}: record #{position}"
        metadata = record.get("metadata") if isinstance(record, dict) else None
        responses = record.get("responses", {}) if isinstance(record, dict) else None
        if not isinstance(metadata, dict) or not isinstance(responses, dict):
            raise ValueError(f"{where}: a record is a JSON object with 'metadata' and 'responses'")
        answers = responses.get(QUESTION, [])
        if not isinstance(answers, list):
            raise ValueError(f"{where}: responses[{QUESTION!r}] must be a list")
        # Dataset.to_disk writes no response's status, but the record's: "completed" once it
        # has the submissions it asks for, so a value in a "pending" record was not submitted
        # (a draft) unless the response says otherwise
        unsubmitted = record.get("status") == "pending"
        votes, skipped = _record_votes(answers, where, unsubmitted=unsubmitted)
        fields = record.get("fields")
        fields = fields if isinstance(fields, dict) else {}
        stored = {
            "pair_id": record_id,
            "first": metadata.get("first"),
            "second": metadata.get("second"),
            "first_text": fields.get("first_response"),
            "second_text": fields.get("second_response"),
        }
        yield tool_pair(dataset, stored, votes, skipped=skipped, where=where)


def _record_votes(
    answers: list[Any], where: str, *, unsubmitted: bool = False
) -> tuple[list[str], int]:
    """Each user's vote (their last response); no value or a non-submitted status is a skip, a
    draft no answer. A response without a status is submitted, or with ``unsubmitted`` (its
    record is pending) a draft when it has a value."""
    latest: dict[Any, dict[str, Any]] = {}
    for position, answer in enumerate(answers):
        if not isinstance(answer, dict):
            raise ValueError(f"{where}: response #{position} is not a JSON object")
        latest[answer.get("user_id", position)] = answer
    votes, skipped = [], 0
    for answer in latest.values():
        value = answer.get("value")
        if value is not None and value not in VOTES:
            raise ValueError(
                f"{where}: a {QUESTION!r} response must be one of {list(VOTES)}, got {value!r}"
            )
        unstated = "draft" if unsubmitted and value is not None else "submitted"
        status = answer.get("status", unstated)
        if status == "draft":
            continue
        if value is None or status != "submitted":
            skipped += 1
        else:
            votes.append(value)
    return votes, skipped
