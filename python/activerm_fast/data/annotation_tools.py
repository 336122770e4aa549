"""What the annotation-tool adapters (Label Studio, Argilla) share: the stable id of a pair, the
record each tool item carries, how several annotators' votes on one pair become one label, and
how a pull merges the tool's answers into the labelled file that ``select`` reads.

A pair's id is derived from its two dataset rows (prompt label, row index, response text),
independent of their order, so re-running a push finds the items it already created and a pull
matches every answer to its pair by id, never by position.

Combining annotators: each annotator's latest answer counts once. The side with strictly more
votes than each of the others (left, right, tie) wins: label 1 when the left (first) response
does, 0 when the right one does. Anything else with at least one vote (a tie vote leading, or a
draw between the leaders) is a *tie*: the trainer takes 0/1 labels only, so ties stay out of
the labelled file and are kept, with ``"label": 0.5``, in the held file beside it. A pair whose
annotators all skipped is *skipped*; one nobody answered yet is *pending*; both are held too.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._validation import pairs_tensor, real_vector
from .annotation import batch_record, read_labelled
from .dataset import Dataset
from .json_files import jsonl_records
from .preference_data import read_annotations

# an annotator's answer about a pair: the left (first) response is better, the right, or neither
FIRST, SECOND, TIE = "first", "second", "tie"
VOTES = (FIRST, SECOND, TIE)


def pair_id(dataset: Dataset, first: int, second: int) -> str:
    """The stable id of the pair of rows ``first`` and ``second`` of ``dataset``.

    Parameters
    ----------
    dataset : Dataset
        The dataset the rows index.
    first, second : int
        Row indices; the id does not depend on their order.

    Returns
    -------
    str
        ``"pair-"`` and 16 hex digits of a SHA-256 over both rows' prompt label, row index and
        response text: the same on every run over the same dataset.

    Examples
    --------
    >>> import numpy as np
    >>> from activerm_fast.data import from_arrays
    >>> data = from_arrays(np.eye(3, dtype=np.float32), np.array([0, 0, 1]))
    >>> pair_id(data, 0, 2) == pair_id(data, 2, 0)
    True
    """
    assert dataset.prompt_names is not None, "set by Dataset.__post_init__"
    sides = []
    for row in (first, second):
        name = dataset.prompt_names[int(dataset.prompt_ids[row])]
        text = "" if dataset.responses is None else dataset.responses[row]
        sides.append(json.dumps([str(name), int(row), text], ensure_ascii=False))
    digest = hashlib.sha256("\n".join(sorted(sides)).encode("utf-8")).hexdigest()
    return f"pair-{digest[:16]}"


def item_records(
    dataset: Dataset, pairs: Any, scores: Any | None = None, *, tool: str
) -> list[dict[str, Any]]:
    """One record per pair to send to an annotation tool: the batch record of
    :func:`~activerm_fast.data.annotation.write_batch` with every text the annotators read, plus
    ``pair_id``, ``rank`` (1 = chosen first) and ``score`` (the selection gain, or
    ``1 - (rank - 1) / k`` without gains, so that a higher score is always chosen earlier).

    Parameters
    ----------
    dataset : Dataset
        The dataset the pairs index; it must have response texts.
    pairs : array_like
        (k, 2) row indices in the order they were chosen, each unordered pair at most once.
    scores : array_like, optional
        (k,) finite selection gains of the pairs.
    tool : str
        The tool's name, for the error messages.

    Returns
    -------
    list of dict
        The records, in the order of ``pairs``.

    Raises
    ------
    ValueError
        If the dataset has no response texts, a pair is out of range, repeated or compares a
        response with itself, or ``scores`` does not hold one finite number per pair.

    Examples
    --------
    >>> from activerm_fast.data import load
    >>> record = item_records(load("arena-bench"), [[0, 20]], [2.5], tool="Label Studio")[0]
    >>> record["first"], record["second"], record["rank"], record["score"]
    (0, 20, 1, 2.5)
    """
    if dataset.responses is None:
        raise ValueError(
            f"dataset {dataset.name!r} has no response texts, and {tool} annotators need them: "
            "use arena-bench, a dataset from embed_texts or a preference dataset"
        )
    checked = pairs_tensor(pairs, dataset.n, torch.device("cpu"), "pairs", unique=True).numpy()
    k = len(checked)
    gains = None if scores is None else real_vector(scores, "scores", k)
    records = []
    for rank, (first, second) in enumerate(checked.tolist(), start=1):
        record = batch_record(dataset, first, second)
        for side in ("first", "second"):
            # a dataset with response texts but no prompt texts shows the prompt's label
            record.setdefault(f"{side}_prompt_text", str(record[f"{side}_prompt"]))
        record["pair_id"] = pair_id(dataset, first, second)
        record["rank"] = rank
        record["score"] = 1 - (rank - 1) / k if gains is None else float(gains[rank - 1])
        records.append(record)
    return records


@dataclass(frozen=True)
class ToolPair:
    """One pair as a tool holds it: its id, its rows (``first`` shown left), the number of
    annotators' votes for each of ``"first"``, ``"second"``, ``"tie"``, how many annotators
    skipped it, and where it was read (for error messages)."""

    pair_id: str
    first: int
    second: int
    votes: Mapping[str, int]
    skipped: int
    where: str

    @property
    def status(self) -> str:
        """``"labelled"`` (a side has the most votes), ``"tie"``, ``"skipped"`` or
        ``"pending"``: the combination rule of this module's docstring."""
        counts = [self.votes.get(vote, 0) for vote in VOTES]
        if sum(counts) == 0:
            return "skipped" if self.skipped else "pending"
        best = max(counts)
        if counts.count(best) == 1 and counts[2] != best:
            return "labelled"
        return "tie"

    @property
    def label(self) -> int | None:
        """1 when the first (left) response won, 0 when the second did, None otherwise."""
        if self.status != "labelled":
            return None
        return int(self.votes.get(FIRST, 0) > self.votes.get(SECOND, 0))


def tool_pair(
    dataset: Dataset,
    record: Mapping[str, Any],
    votes: Iterable[str],
    *,
    skipped: int,
    where: str,
) -> ToolPair:
    """A :class:`ToolPair` from a tool item's stored ``pair_id``, ``first`` and ``second`` and
    its annotators' votes.

    Parameters
    ----------
    dataset : Dataset
        The dataset the item's rows index.
    record : mapping
        The item's stored ``pair_id`` (str), ``first`` and ``second`` (rows), and where the
        tool keeps them the ``first_text`` and ``second_text`` its annotators read.
    votes : iterable of str
        One of ``"first"``, ``"second"``, ``"tie"`` per annotator who answered.
    skipped : int
        How many annotators skipped the item.
    where : str
        The item, for error messages (e.g. ``"export.json: task 17"``).

    Returns
    -------
    ToolPair

    Raises
    ------
    ValueError
        Naming ``where``, if the id or a row is missing or out of range, if the id is not the
        one of those rows of ``dataset`` (a pull against another dataset), or if the texts
        shown are not those rows' responses in that order (sides swapped).

    Examples
    --------
    >>> from activerm_fast.data import load
    >>> data = load("arena-bench")
    >>> stored = {"pair_id": pair_id(data, 0, 20), "first": 0, "second": 20}
    >>> pair = tool_pair(data, stored, ["first", "tie", "first"], skipped=1, where="example")
    >>> pair.status, pair.label
    ('labelled', 1)
    >>> tool_pair(data, stored, ["first", "second"], skipped=0, where="example").status
    'tie'
    """
    stored = record.get("pair_id")
    if not isinstance(stored, str):
        raise ValueError(f"{where}: no pair_id, got {stored!r}: not an item this package pushed")
    rows = []
    for key in ("first", "second"):
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < dataset.n:
            raise ValueError(
                f"{where}: {key!r} must be a row of {dataset.name!r} (0 to {dataset.n - 1}), "
                f"got {value!r}"
            )
        rows.append(value)
    if rows[0] == rows[1] or pair_id(dataset, rows[0], rows[1]) != stored:
        raise ValueError(
            f"{where}: pair_id {stored!r} is not the id of rows {rows[0]} and {rows[1]} of "
            f"{dataset.name!r}: was it pushed from another dataset?"
        )
    # the id is the same either way round: the texts shown tell which side a vote is for
    shown = [record.get(f"{key}_text") for key in ("first", "second")]
    if dataset.responses is not None and all(isinstance(text, str) for text in shown):
        texts = [dataset.responses[row] for row in rows]
        if shown != texts:
            what = "in the other order" if shown == texts[::-1] else "other texts"
            raise ValueError(
                f"{where}: the responses shown are {what} than rows {rows[0]} (first) and "
                f"{rows[1]} (second) of {dataset.name!r}: a vote would go to the wrong response"
            )
    counts = {vote: 0 for vote in VOTES}
    for vote in votes:
        counts[vote] += 1
    return ToolPair(stored, rows[0], rows[1], counts, skipped, where)


@dataclass(frozen=True)
class PullSummary:
    """What a pull found and wrote.

    Attributes: the ``labelled`` and ``held`` files; ``labelled_new`` pairs appended to the
    labelled file, ``labelled_already`` decided pairs it already held (left as they are,
    ``changed`` of them now with another answer in the tool: the other winner or a tie);
    ``ties``, ``skipped``, ``pending`` pairs not decided before, written to the held file;
    ``annotations`` counted votes over all pairs; ``held_kept`` pairs the held file held
    before that this pull does not hold, kept there.
    """

    labelled: Path
    held: Path
    labelled_new: int
    labelled_already: int
    changed: int
    ties: int
    skipped: int
    pending: int
    annotations: int
    held_kept: int = 0

    def line(self, source: str) -> str:
        """A one-line report of the pull from ``source``."""
        text = (
            f"{source}: {self.labelled_new} newly labelled pairs appended to {self.labelled}"
            f" ({self.labelled_already} already there"
        )
        if self.changed:
            text += (
                f", {self.changed} of them now with another answer in the tool (the other "
                "winner or a tie), kept"
            )
        kept = f", {self.held_kept} held before and not in {source} kept" if self.held_kept else ""
        return text + (
            f"); held in {self.held}: {self.ties} ties, {self.skipped} skipped, "
            f"{self.pending} pending{kept}; {self.annotations} votes counted"
        )


def default_held(labelled: str | os.PathLike[str]) -> Path:
    """The held file beside ``labelled``.

    Parameters
    ----------
    labelled : path
        The labelled file.

    Returns
    -------
    Path
        ``<folder>/<stem>.held<suffix>``.

    Examples
    --------
    >>> default_held("runs/labelled.jsonl").as_posix()
    'runs/labelled.held.jsonl'
    """
    path = Path(labelled)
    return path.with_name(f"{path.stem}.held{path.suffix or '.jsonl'}")


def merge_pull(
    dataset: Dataset,
    found: Iterable[ToolPair],
    labelled: str | os.PathLike[str],
    held: str | os.PathLike[str] | None = None,
) -> PullSummary:
    """Merge a tool's pairs into the labelled file and rewrite the held file.

    Decided pairs the labelled file lacks (matched by pair id, either order) are appended in
    the batch format with their ``label``, ``pair_id`` and ``votes``; pairs it has are left as
    they are, so a second pull of the same answers changes nothing and a label is never
    written twice. Every other pair of the tool (tie, skipped, pending) is written to ``held``,
    beside the pairs it held before that this pull does not hold (another batch's export, or
    an older one): ``select --exclude`` reads it so that no pair still in the tool is
    proposed again, and no tie is lost. Both files are written to a temporary file and
    renamed into place, so an interrupted pull leaves each either as it was or complete.

    Parameters
    ----------
    dataset : Dataset
        The dataset the pairs index.
    found : iterable of ToolPair
        The tool's pairs, each id at most once.
    labelled : path
        The labelled JSONL file ``select --labelled`` reads (created when missing).
    held : path, optional
        The held JSONL file; default :func:`default_held` of ``labelled``.

    Returns
    -------
    PullSummary
        The files written and the pairs counted: appended, already there, held.

    Raises
    ------
    ValueError
        If a pair id appears twice, the labelled file is malformed (naming its line), or
        an existing held file is not a UTF-8 JSONL file (naming it; left as it is).

    Examples
    --------
    >>> import os, tempfile
    >>> from activerm_fast.data import load
    >>> data = load("arena-bench")
    >>> votes = {"first": 2, "second": 0, "tie": 1}
    >>> found = [ToolPair(pair_id(data, 0, 20), 0, 20, votes, 0, "example")]
    >>> labelled = os.path.join(tempfile.mkdtemp(), "labelled.jsonl")
    >>> merge_pull(data, found, labelled).labelled_new
    1
    >>> merge_pull(data, found, labelled).labelled_new  # the same answers again: no change
    0
    """
    labelled = Path(labelled)
    held_path = default_held(labelled) if held is None else Path(held)
    have_pairs, have_labels = read_labelled(labelled, dataset.n)
    # the pairs held before, by pair id: kept unless this pull decides or holds them afresh,
    # so a tie or a pending pair of another (or an older) export is never lost; a file that is
    # not one of held records (a wrong --held) is refused, naming its line, not lost
    kept: dict[str, dict[str, Any]] = {}
    if held_path.is_file():
        rows = read_annotations(held_path, dataset.n)[0].tolist()
        records = (record for _, record in jsonl_records(held_path))
        kept = {pair_id(dataset, i, j): r for (i, j), r in zip(rows, records, strict=True)}
    winners = {
        pair_id(dataset, i, j): (i if label == 1 else j)
        for (i, j), label in zip(have_pairs.tolist(), have_labels.tolist(), strict=True)
    }
    seen: dict[str, str] = {}
    appended, held_records = [], []
    counts = {"labelled_already": 0, "changed": 0, "tie": 0, "skipped": 0, "pending": 0}
    annotations = 0
    for pair in found:
        if pair.pair_id in seen:
            raise ValueError(
                f"{pair.where}: pair_id {pair.pair_id!r} is also at {seen[pair.pair_id]}"
            )
        seen[pair.pair_id] = pair.where
        annotations += sum(pair.votes.values())
        record = batch_record(dataset, pair.first, pair.second)
        record.update(pair_id=pair.pair_id, votes=dict(pair.votes), skipped=pair.skipped)
        label = pair.label
        kept.pop(pair.pair_id, None)  # this pull's answer replaces the one held before
        if pair.pair_id in winners:  # decided before: kept, whatever the tool says now
            counts["labelled_already"] += 1
            winner = None if label is None else pair.first if label == 1 else pair.second
            counts["changed"] += pair.status == "tie" or (
                winner is not None and winners[pair.pair_id] != winner
            )
        elif label is None:
            record.update(label=0.5 if pair.status == "tie" else None, status=pair.status)
            counts[pair.status] += 1
            held_records.append(record)
        else:
            record["label"] = label
            winners[pair.pair_id] = pair.first if label == 1 else pair.second
            appended.append(record)
    if appended:
        existing = labelled.read_text(encoding="utf-8") if labelled.exists() else ""
        if existing and not existing.endswith("\n"):
            existing += "\n"
        _replace(labelled, existing + _jsonl(appended))
    kept = {key: record for key, record in kept.items() if key not in winners}  # decided since
    held_kept = len(kept)
    _replace(held_path, _jsonl([*kept.values(), *held_records]))
    return PullSummary(
        labelled=labelled,
        held=held_path,
        labelled_new=len(appended),
        labelled_already=counts["labelled_already"],
        changed=counts["changed"],
        ties=counts["tie"],
        skipped=counts["skipped"],
        pending=counts["pending"],
        annotations=annotations,
        held_kept=held_kept,
    )


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename,
    keeping the file's permissions (a new file's those the umask gives; mkstemp's are 0600,
    which made a shared labelled file unreadable to the team)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        mode = path.stat().st_mode & 0o7777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
