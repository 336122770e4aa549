"""Labelled pairs in and out as the preference datasets TRL's reward and DPO trainers read.

Export: :func:`export_preferences` writes labelled pairs of a :class:`~activerm_fast.data.Dataset`
that has texts, from the annotation workflow's ``labelled.jsonl`` (:func:`read_annotations`)
or a simulate run (:func:`read_simulation_labels`), in one of three forms:

* ``standard`` — ``{"prompt": str, "chosen": str, "rejected": str}`` (explicit prompt);
* ``conversational`` — the same with the prompt a list of ``{"role", "content"}`` messages and
  chosen/rejected one assistant message each (the trainer applies the chat template);
* ``implicit`` — ``{"chosen": [user, assistant], "rejected": [user, assistant]}``: each side
  carries its own prompt, the only form that holds a cross-prompt pair. Reward trainers read
  it; DPO needs one prompt per row, so it wants within-prompt pairs in either other form.

A label is 1 when the first response of the pair wins (it becomes ``chosen``), 0 when the
second does, 0.5 for a tie and NaN (``null`` in JSONL) when the pair is not labelled yet.
Unlabelled pairs are never written; ties are left out (``ties="drop"``) or written twice,
once each way (``ties="both"``: the two rows' Bradley-Terry losses are smallest when the two
rewards are equal). Either way the summary counts them. A pair of one response text to one
prompt text twice (a dataset may hold an answer twice) is left out and counted too.

The file kind follows the path: ``.jsonl``, ``.parquet`` (needs pyarrow) or a folder without a
suffix, written by ``datasets.Dataset.save_to_disk`` (needs datasets); the extra
``activerm_fast[export]`` installs both.

Import: :func:`load_preferences` reads such a dataset back (any of the three forms and kinds)
into a :class:`~activerm_fast.data.Dataset`: one row per distinct (prompt, response), labelled
pairs ``(chosen row, rejected row)`` with label 1, a pair on several rows once (its plurality
winner; a tie left out). Rows carrying the embedding columns
``chosen_embedding``/``rejected_embedding`` (as written with ``embeddings=True``) are used as
they are; otherwise the texts are embedded with :func:`~activerm_fast.data.embed_texts`.
:func:`import_preferences` embeds a file once and writes it again with the embedding columns.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._validation import (
    as_tensor,
    count_argument,
    describe,
    known_name,
    labelled_pairs,
    pair_keys,
    pairs_tensor,
)
from .annotation import _OncePerPair, _row_index
from .dataset import Dataset, EmbeddingOptions, embed_texts, from_arrays
from .json_files import jsonl_records
from .npz_files import npz_member

if TYPE_CHECKING:
    from typing_extensions import Unpack

FORMS = ("standard", "conversational", "implicit")
TIES = ("drop", "both")
EMBEDDING_COLUMNS = ("chosen_embedding", "rejected_embedding")
TIE = 0.5
_INSTALL = "pip install 'activerm_fast[export]'"
# what datasets.load_from_disk needs in a folder: both of a Dataset's files, or a DatasetDict's
_DATASET_FILES = ("dataset_info.json", "state.json")
_DATASET_DICT_FILE = "dataset_dict.json"
# every file Dataset.save_to_disk writes: a folder of only these is a previous export, which a
# new export replaces whole
_SAVED_FILE = re.compile(r"dataset_info\.json|state\.json|data-\d{5}-of-\d{5}\.arrow")


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_preferences` wrote.

    Attributes
    ----------
    path : Path
        Where.
    form : str
        ``standard``, ``conversational`` or ``implicit``.
    rows : int
        Preference rows written.
    decided : int
        Pairs with a winner.
    ties : int
        Tied pairs: written both ways when ``ties_written``, else left out.
    ties_written : bool
        Whether ties were written.
    unlabelled : int
        Pairs without a label, left out.
    identical : int
        Labelled pairs of the same response text to the same prompt text (a dataset may hold
        one answer twice), left out: a preference row compares two different responses.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import activerm_fast as arm
    >>> arena = arm.load("arena-bench")  # packaged, with texts
    >>> a, b, c = np.flatnonzero(arena.prompt_ids == 0)[:3]  # three answers to one prompt
    >>> path = os.path.join(tempfile.mkdtemp(), "arena.jsonl")
    >>> summary = arm.export_preferences(
    ...     arena, [[a, b], [b, c], [a, c]], [1.0, 0.5, np.nan], path, ties="both"
    ... )
    >>> summary.rows, summary.decided, summary.ties, summary.unlabelled  # a tie: 2 rows
    (3, 1, 1, 1)
    """

    path: Path
    form: str
    rows: int
    decided: int
    ties: int
    ties_written: bool
    unlabelled: int
    identical: int


# ---- labelled pairs from the annotation workflow and from simulate runs ---------------------


def read_annotations(path: str | os.PathLike[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every record of an annotation JSONL file, ties and unlabelled pairs included.

    The format of :mod:`~activerm_fast.data.annotation`: label 1.0 (first wins), 0.0 (second
    wins), 0.5 (a tie) or NaN (``"label": null``, not labelled yet).

    Parameters
    ----------
    path : str or os.PathLike
        The JSONL file.
    n : int
        Rows of the dataset the indices refer to.

    Returns
    -------
    pairs : np.ndarray
        (M, 2) int64 rows ``(first, second)``, one per record, labelled or not.
    labels : np.ndarray
        (M,) float64: 1, 0, 0.5 or NaN.

    Raises
    ------
    TypeError
        If ``path`` is not a path.
    ValueError
        If a record is not an object, an index is not one of ``n`` rows, the two rows are
        the same, the label is missing or not 1, 0, 0.5 or null, or a pair (either way round)
        is on two lines.

    Examples
    --------
    >>> import os, tempfile
    >>> from activerm_fast import read_annotations
    >>> path = os.path.join(tempfile.mkdtemp(), "labelled.jsonl")
    >>> with open(path, "w") as file:
    ...     _ = file.write('{"first": 0, "second": 1, "label": 1}\\n')
    ...     _ = file.write('{"first": 3, "second": 2, "label": 0.5}\\n')
    ...     _ = file.write('{"first": 0, "second": 2, "label": null}\\n')
    >>> pairs, labels = read_annotations(path, 4)
    >>> pairs.tolist(), labels.tolist()
    ([[0, 1], [3, 2], [0, 2]], [1.0, 0.5, nan])
    """
    n = count_argument(n, "n")
    pairs, labels = [], []
    once = _OncePerPair()
    for where, record in jsonl_records(_path_argument(path, "path")):
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        first, second = (_row_index(record, key, n, where) for key in ("first", "second"))
        if first == second:
            raise ValueError(f"{where}: first and second are the same response {first}")
        if "label" not in record:
            raise ValueError(f"{where}: no 'label' (null while the pair is not labelled)")
        labels.append(_annotation_label(record["label"], where))
        once.add((first, second), where)
        pairs.append((first, second))
    return np.array(pairs, np.int64).reshape(-1, 2), np.array(labels, np.float64)


def _annotation_label(value: Any, where: str) -> float:
    if value is None:
        return float("nan")
    if not isinstance(value, bool) and value in (0, TIE, 1):
        return float(value)
    raise ValueError(
        f"{where}: label must be 1 (first wins), 0 (second wins), 0.5 (a tie) or null "
        f"(not labelled yet), got {value!r}"
    )


def read_simulation_labels(
    run_dir: str | os.PathLike[str], dataset: Dataset
) -> tuple[np.ndarray, np.ndarray]:
    """The labelled pairs of one simulate run, as rows of ``dataset``, and their 0/1 labels.

    ``run_dir`` is one run's checkpoint folder, ``OUT/checkpoints/<strategy>-seed<seed>``; the
    pairs are those of its last finished round. The run indexed ``dataset.train()``, so
    ``dataset`` must be the one simulate ran on, with the same split.

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run's checkpoint folder.
    dataset : Dataset
        The dataset the run used.

    Returns
    -------
    pairs : np.ndarray
        (M, 2) int64 rows of ``dataset``.
    labels : np.ndarray
        (M,) float64 labels, 0 or 1.

    Raises
    ------
    TypeError
        If ``run_dir`` is not a path or ``dataset`` not a Dataset.
    FileNotFoundError
        If the folder holds no checkpoint.
    ValueError
        If it is a whole simulate output folder (the message names its runs), not a
        checkpoint, or a run on another dataset or split.

    Examples
    --------
    >>> import os, tempfile
    >>> import activerm_fast as arm
    >>> data = arm.synthetic(6, 4, 3, 4, dim=8)
    >>> config = arm.LoopConfig(rounds=1, per_round=4, ensemble=1, hidden=(8,), epochs=2)
    >>> out = tempfile.mkdtemp()
    >>> _ = arm.simulate(data, ["random"], config=config, seeds=(0,), out_dir=out, progress=False)
    >>> run = os.path.join(out, "checkpoints", "random-seed0")
    >>> pairs, labels = arm.read_simulation_labels(run, data)
    >>> pairs.shape, bool(data.is_test[pairs].any())  # rows of the whole dataset, all training
    ((4, 2), False)
    """
    folder = _path_argument(run_dir, "run_dir")
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a Dataset, got {describe(dataset)}")
    state_file = folder / "state.json"
    if not state_file.is_file():
        runs = sorted(p.parent.name for p in folder.glob("checkpoints/*/state.json"))
        if runs:
            raise ValueError(
                f"{folder} is a simulate output folder; name one of its runs, e.g. "
                f"{folder / 'checkpoints' / runs[0]} (runs: {', '.join(runs)})"
            )
        raise FileNotFoundError(
            f"{state_file} does not exist: a run is a folder OUT/checkpoints/<strategy>-seed<seed> "
            "of a simulate output folder, written after its first round"
        )
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        train_rows, labels_file = state["identity"]["train_rows"], state["labels_file"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{state_file}: not a simulate checkpoint ({err!r})") from None
    assert dataset.is_test is not None, "set by Dataset.__post_init__"
    rows = np.flatnonzero(~dataset.is_test)
    if train_rows != rows.size:
        raise ValueError(
            f"{folder} ran on {train_rows} training responses, but {dataset.name!r} has "
            f"{rows.size}: pass the dataset (and split) the run used"
        )
    with np.load(folder / labels_file) as archive:
        pairs, labels = labelled_pairs(
            npz_member(archive, "pairs"),
            npz_member(archive, "labels"),
            rows.size,
            f"{folder / labels_file}: ",
        )
    assert pairs is not None and labels is not None, "both read from the archive"
    return rows[pairs], labels.astype(np.float64)


# ---- export ---------------------------------------------------------------------------------


def export_preferences(
    dataset: Dataset,
    pairs: Any,
    labels: Any,
    path: str | os.PathLike[str],
    *,
    form: str = "standard",
    ties: str = "drop",
    embeddings: bool = False,
) -> ExportSummary:
    """Write labelled pairs of ``dataset``'s rows as a preference dataset at ``path``.

    ``pairs`` (M, 2) with ``labels`` (M,), to a ``.jsonl`` or ``.parquet`` file or a folder
    for ``datasets``.

    ``labels``: 1 when ``pairs[k, 0]`` wins, 0 when ``pairs[k, 1]`` does, 0.5 a tie, NaN not
    labelled (left out). ``form``: ``standard``, ``conversational`` or ``implicit`` (see the
    module); the first two refuse a pair of responses to different prompts. ``ties``: ``drop``
    or ``both``. ``embeddings`` adds each side's embedding as ``chosen_embedding`` and
    ``rejected_embedding``, so :func:`load_preferences` needs no text model.

    Parameters
    ----------
    dataset : Dataset
        A dataset with texts (prompts and responses).
    pairs : np.ndarray or torch.Tensor
        (M, 2) integer rows of ``dataset``, two different responses each.
    labels : array_like
        (M,) 1, 0, 0.5 or NaN.
    path : str or os.PathLike
        ``.jsonl``, ``.parquet`` (pyarrow) or a folder without a suffix (datasets): a new or
        empty folder, or a previous export's, which is replaced whole (see
        :func:`output_kind`).
    form : {"standard", "conversational", "implicit"}, default "standard"
        The rows' form.
    ties : {"drop", "both"}, default "drop"
        Leave ties out or write them both ways.
    embeddings : bool, default False
        Add the embedding columns.

    Returns
    -------
    ExportSummary
        What was written.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If the dataset has no texts, a pair or label is invalid, a name is unknown, ``path``
        is empty or a file or folder it must not write over, nothing is left to write, or a
        cross-prompt pair is given for a form with one prompt.
    ImportError
        If a Parquet file or folder is asked for without pyarrow or datasets.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import activerm_fast as arm
    >>> chat = arm.Dataset(
    ...     "chat", np.random.default_rng(0).normal(size=(4, 8)), np.array([0, 0, 1, 1]),
    ...     prompts=["Hi?", "Sum 2+2"], responses=["Hello there", "Go away", "It is 4", "5"],
    ... )
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "prefs.jsonl")
    >>> pairs, labels = np.array([[0, 1], [3, 2], [0, 2]]), np.array([1.0, 0.0, np.nan])
    >>> arm.export_preferences(chat, pairs, labels, path).rows  # the unlabelled pair left out
    2
    >>> print(open(path).read(), end="")  # (3, 2) with label 0: response 2 is chosen
    {"prompt": "Hi?", "chosen": "Hello there", "rejected": "Go away"}
    {"prompt": "Sum 2+2", "chosen": "It is 4", "rejected": "5"}
    >>> arm.export_preferences(chat, [[0, 2]], [1.0], path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: pairs[0] = (0, 2) compares responses to different prompts ...
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a Dataset, got {describe(dataset)}")
    if dataset.prompts is None or dataset.responses is None:
        raise ValueError(
            f"dataset {dataset.name!r} has no texts (prompts and responses), which a preference "
            "dataset is made of: use arena-bench, a dataset from embed_texts, or one read with "
            "load_preferences"
        )
    t = as_tensor(pairs, "pairs")
    checked = pairs_tensor(t, dataset.n, t.device, "pairs", distinct=True)
    pairs_array = checked.cpu().to(torch.int64).numpy()
    label_array = _preference_labels(labels, pairs_array.shape[0])
    form = known_name(form, FORMS, "form")
    ties = known_name(ties, TIES, "ties")
    if not isinstance(embeddings, bool):
        raise TypeError(f"embeddings must be True or False, got {describe(embeddings)}")
    kind = output_kind(path)

    unlabelled = np.isnan(label_array)
    identical = ~unlabelled & _same_texts(dataset, pairs_array)
    tied = (label_array == TIE) & ~identical
    kept = ~unlabelled & ~identical & ((label_array != TIE) | (ties == "both"))
    summary = ExportSummary(
        path=Path(path),
        form=form,
        rows=int(kept.sum() + (tied & kept).sum()),
        decided=int((~tied & ~unlabelled & ~identical).sum()),
        ties=int(tied.sum()),
        ties_written=ties == "both",
        unlabelled=int(unlabelled.sum()),
        identical=int(identical.sum()),
    )
    if summary.rows == 0:
        hint = "" if ties == "both" else " (ties='both' writes them)"
        same = f", {summary.identical} compare identical texts" if summary.identical else ""
        raise ValueError(
            f"nothing to export: of {len(label_array)} pairs, {summary.unlabelled} have no "
            f"label{same} and {summary.ties} are ties{hint}"
        )
    if form != "implicit":
        _refuse_cross_prompt(dataset, pairs_array, kept, form)
    rows = [
        _row(dataset, chosen, rejected, form=form, embeddings=embeddings)
        for chosen, rejected in _chosen_rejected(pairs_array[kept], label_array[kept])
    ]
    _write(rows, Path(path), kind)
    return summary


def _preference_labels(x: Any, count: int) -> np.ndarray:
    """(count,) float64 labels, each 1, 0, 0.5 (tie) or NaN (not labelled)."""
    t = as_tensor(x, "labels")
    if tuple(t.shape) != (count,):
        raise ValueError(f"labels must have shape ({count},) to match pairs, got {tuple(t.shape)}")
    values = t.cpu().numpy().astype(np.float64)
    bad = ~np.isnan(values) & (values != 0) & (values != TIE) & (values != 1)
    if bad.any():
        at = int(np.flatnonzero(bad)[0])
        raise ValueError(
            "labels must be 1 (first wins), 0 (second wins), 0.5 (a tie) or NaN (not labelled), "
            f"got {values[at]} at index {at}"
        )
    return values


def _same_texts(dataset: Dataset, pairs: np.ndarray) -> np.ndarray:
    """Whether each pair's two rows hold the same response to the same prompt text: a row of
    them would compare a text with itself, which :func:`load_preferences` refuses."""
    assert dataset.prompts is not None and dataset.responses is not None
    prompts, responses = dataset.prompts, dataset.responses
    prompt_ids = dataset.prompt_ids.tolist()
    return np.array(
        [
            responses[a] == responses[b] and prompts[prompt_ids[a]] == prompts[prompt_ids[b]]
            for a, b in pairs.tolist()
        ],
        dtype=bool,
    ).reshape(-1)


def _chosen_rejected(pairs: np.ndarray, labels: np.ndarray) -> list[tuple[int, int]]:
    """(chosen, rejected) rows of labelled pairs in their order; a tie both ways."""
    rows: list[tuple[int, int]] = []
    for (first, second), label in zip(pairs.tolist(), labels.tolist(), strict=True):
        if label != 0:
            rows.append((first, second))
        if label != 1:
            rows.append((second, first))
    return rows


def _refuse_cross_prompt(dataset: Dataset, pairs: np.ndarray, kept: np.ndarray, form: str) -> None:
    prompt_ids = dataset.prompt_ids[pairs]
    cross = kept & (prompt_ids[:, 0] != prompt_ids[:, 1])
    if cross.any():
        at = int(np.flatnonzero(cross)[0])
        first, second = pairs[at].tolist()
        raise ValueError(
            f"pairs[{at}] = ({first}, {second}) compares responses to different prompts (so do "
            f"{int(cross.sum())} of the {int(kept.sum())} pairs to write); the {form} form holds "
            "one prompt per row: use the implicit form (form='implicit', --form implicit), whose "
            "sides carry their own prompts and which reward trainers read, or within-prompt pairs"
        )


def _row(
    dataset: Dataset, chosen: int, rejected: int, *, form: str, embeddings: bool
) -> dict[str, Any]:
    """One preference row of ``form``; the dataset's texts are checked present by the caller."""
    assert dataset.prompts is not None and dataset.responses is not None
    prompt = [dataset.prompts[dataset.prompt_ids[side]] for side in (chosen, rejected)]
    response = [dataset.responses[side] for side in (chosen, rejected)]
    row: dict[str, Any]
    if form == "standard":
        row = {"prompt": prompt[0], "chosen": response[0], "rejected": response[1]}
    elif form == "conversational":
        row = {
            "prompt": [_message("user", prompt[0])],
            "chosen": [_message("assistant", response[0])],
            "rejected": [_message("assistant", response[1])],
        }
    else:
        row = {
            key: [_message("user", prompt[side]), _message("assistant", response[side])]
            for side, key in enumerate(("chosen", "rejected"))
        }
    if embeddings:
        for side, key in zip((chosen, rejected), EMBEDDING_COLUMNS, strict=True):
            row[key] = dataset.embeddings[side].tolist()
    return row


def _message(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def _write(rows: list[dict[str, Any]], path: Path, kind: str) -> None:
    if kind == "jsonl":
        with open(path, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    elif kind == "parquet":
        pa, parquet = _pyarrow("writing Parquet")
        parquet.write_table(pa.Table.from_pylist(rows), path)
    else:
        _save_folder(_datasets("saving a datasets folder").Dataset.from_list(rows), path)


def _save_folder(table: Any, path: Path) -> None:
    """``table.save_to_disk`` at ``path``, replacing a previous export whole.

    save_to_disk writes into a folder that exists, beside what it holds (a previous export's
    extra shards included), so the folder is written beside ``path`` and swapped in.
    """
    target = Path(os.path.abspath(path))
    target.parent.mkdir(parents=True, exist_ok=True)  # as save_to_disk's own makedirs did
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as staging:
        table.save_to_disk(str(Path(staging) / "new"))
        if target.is_dir():
            target.rename(Path(staging) / "previous")  # removed with the staging folder
        (Path(staging) / "new").rename(target)


# ---- import ---------------------------------------------------------------------------------


def load_preferences(
    path: str | os.PathLike[str], model: Any = None, **options: Unpack[EmbeddingOptions]
) -> Dataset:
    """A :class:`~activerm_fast.data.Dataset` from a preference dataset at ``path``.

    A ``.jsonl`` or ``.parquet`` file or a ``datasets`` folder, in any of the three forms.

    Each distinct (prompt, response) becomes one row, in order of first appearance, and each
    preference row the labelled pair (chosen row, rejected row) with label 1. Each row is a
    vote: a pair compared on several rows becomes one labelled pair, won by the side chosen on
    more of them, and a pair chosen equally often each way (a tie, as
    ``export_preferences(ties="both")`` writes it) is left out of the labelled pairs; either
    case is warned of. A prompt of
    several messages becomes one text, each message as ``role: content``. With the embedding
    columns on every row they are the embeddings; otherwise the texts are embedded by
    :func:`~activerm_fast.data.embed_texts` with ``model``, ``batch_size`` and
    ``show_progress_bar`` (extra ``activerm_fast[text]``). The prompt-level split is drawn
    with ``test_fraction`` and ``seed``.

    Parameters
    ----------
    path : str or os.PathLike
        The preference dataset.
    model : object or str or os.PathLike, optional
        The text model, as in :func:`~activerm_fast.data.embed_texts`; unused when the rows
        carry embeddings.
    **options
        :func:`~activerm_fast.data.embed_texts`' ``batch_size`` and ``show_progress_bar``
        (passed to the text model), ``test_fraction`` (share of the prompts in the test
        split, default 0.2) and ``seed`` (seeds that split, default 0):
        :class:`~activerm_fast.data.dataset.EmbeddingOptions`.

    Returns
    -------
    Dataset
        With texts, and labelled pairs (chosen row, rejected row) with label 1.

    Raises
    ------
    TypeError
        If ``path`` is not a path.
    FileNotFoundError
        If there is no such file or folder.
    ValueError
        If a row is not a preference row, rows are not all alike (form, embedding columns),
        one response has two embeddings, a row compares a response with itself, or there
        is no row.
    ImportError
        If a reader (pyarrow, datasets) or, for texts, sentence-transformers is missing.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import activerm_fast as arm
    >>> texts = dict(prompts=["Q1", "Q2"], responses=["yes", "no", "maybe", "never"])
    >>> qa = arm.Dataset("qa", np.eye(4), np.array([0, 0, 1, 1]), **texts)
    >>> path = Path(tempfile.mkdtemp()) / "implicit.jsonl"
    >>> _ = arm.export_preferences(  # the implicit form, with the embedding columns
    ...     qa, [[0, 1], [0, 2]], [1, 0], path, form="implicit", embeddings=True
    ... )
    >>> back = arm.load_preferences(path)  # embeddings in the file: no text model
    >>> back.pairs.tolist(), back.labels.tolist()  # (chosen, rejected), label 1
    ([[0, 1], [2, 0]], [1, 1])
    >>> back.responses, bool(np.allclose(back.embeddings, qa.embeddings[[0, 1, 2]]))
    (['yes', 'no', 'maybe'], True)
    """
    unknown = sorted(set(options) - set(EmbeddingOptions.__annotations__))
    if unknown:
        raise TypeError(f"load_preferences got an unexpected keyword argument {unknown[0]!r}")
    comparisons = _read_comparisons(_path_argument(path, "path"))
    return _dataset(comparisons, _Reading(model, options))


def import_preferences(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    model: Any = None,
    *,
    batch_size: int = 32,
    show_progress_bar: bool = True,
) -> tuple[Dataset, ExportSummary]:
    """Embed a preference dataset's texts once and write it again with the embedding columns.

    Reads ``source`` as :func:`load_preferences` does and writes every row of it again, in
    its order (repeated pairs and ties as they were), to ``out`` in the same form with the
    embedding columns, which :func:`load_preferences` and ``--data`` then read without a text
    model.

    Parameters
    ----------
    source : str or os.PathLike
        The preference dataset to read.
    out : str or os.PathLike
        Where to write it with the embedding columns (checked before any embedding).
    model : object or str or os.PathLike, optional
        The text model, as in :func:`~activerm_fast.data.embed_texts`.
    batch_size, show_progress_bar
        Passed to the text model.

    Returns
    -------
    dataset : Dataset
        The dataset read (split with test fraction 0.2, seed 0).
    summary : ExportSummary
        What was written to ``out``.

    Raises
    ------
    TypeError, FileNotFoundError, ValueError, ImportError
        As :func:`load_preferences` and :func:`export_preferences`.

    Examples
    --------
    >>> import json, os, tempfile
    >>> import numpy as np
    >>> import activerm_fast as arm
    >>> folder = tempfile.mkdtemp()
    >>> source, out = os.path.join(folder, "prefs.jsonl"), os.path.join(folder, "embedded.jsonl")
    >>> with open(source, "w") as file:  # one standard-form row, texts only
    ...     row = {"prompt": "Hi?", "chosen": "Hello there", "rejected": "Go away"}
    ...     _ = file.write(json.dumps(row) + "\\n")
    >>> class Lengths:  # any object with sentence-transformers' encode: here, text lengths
    ...     def encode(self, texts, **options):
    ...         return np.array([[len(t), t.count(" ")] for t in texts], np.float32)
    >>> dataset, summary = arm.import_preferences(source, out, Lengths(), show_progress_bar=False)
    >>> dataset.embeddings.tolist()  # [prompt "Hi?", response]: "Hello there", "Go away"
    [[3.0, 0.0, 11.0, 1.0], [3.0, 0.0, 7.0, 1.0]]
    >>> summary.rows, summary.form, json.loads(open(out).readline())["rejected_embedding"]
    (1, 'standard', [3.0, 0.0, 7.0, 1.0])
    """
    comparisons = _read_comparisons(_path_argument(source, "source"))
    output_kind(out, "out")  # a bad name fails before embedding
    reading = _Reading(model, {"batch_size": batch_size, "show_progress_bar": show_progress_bar})
    dataset = _dataset(comparisons, reading)  # split as load_preferences' default
    rows = comparisons.pairs  # every row as read, repeats and ties included
    summary = export_preferences(
        dataset, rows, np.ones(len(rows)), out, form=comparisons.form, embeddings=True
    )
    return dataset, summary


@dataclass(frozen=True)
class _Comparisons:
    """A preference dataset read and checked: each row's prompt and response text, the pairs
    (chosen row, rejected row), and the rows' embeddings when the file carries them."""

    path: Path
    form: str
    prompts: list[str]
    responses: list[str]
    pairs: np.ndarray
    embeddings: np.ndarray | None


def _read_comparisons(path: Path) -> _Comparisons:
    kind = _file_kind(path, writing=False)
    rows: dict[tuple[str, str], int] = {}  # (prompt, response) -> row, in order of appearance
    vectors: list[np.ndarray] = []
    pairs: list[tuple[int, int]] = []
    first: tuple[str, str, bool] | None = None  # where the first record is, its form, embedded
    for where, record in _records(path, kind):
        form, sides = _sides(record, where)
        given = _embeddings(record, where, vectors[0].size if vectors else None)
        if first is None:
            first = (where, form, given is not None)
        elif (form, given is not None) != first[1:]:
            raise ValueError(
                f"{where}: {_describe_record(form, given is not None)}, but {first[0]} is "
                f"{_describe_record(*first[1:])}; every row must be alike"
            )
        pair = []
        for side, (text, column) in enumerate(zip(sides, EMBEDDING_COLUMNS, strict=True)):
            row = rows.setdefault(text, len(rows))
            if given is not None and row == len(vectors):
                vectors.append(given[side])
            elif given is not None and not np.array_equal(vectors[row], given[side]):
                raise ValueError(
                    f"{where}: {column!r} differs from the embedding given before for the same "
                    "response to the same prompt"
                )
            pair.append(row)
        if pair[0] == pair[1]:
            raise ValueError(
                f"{where}: chosen and rejected are the same response to the same prompt; a "
                "preference compares two different responses (remove the row)"
            )
        pairs.append((pair[0], pair[1]))
    if first is None:
        raise ValueError(f"{path}: no preference rows")
    return _Comparisons(
        path=path,
        form=first[1],
        prompts=[prompt for prompt, _ in rows],
        responses=[response for _, response in rows],
        pairs=np.array(pairs, np.int64),
        # float64 as read: the dataset checks that they fit in float32 (one clear error)
        embeddings=np.array(vectors, np.float64) if vectors else None,
    )


def _describe_record(form: str, embedded: bool) -> str:
    return f"a {form}-form row {'with' if embedded else 'without'} embedding columns"


def _records(path: Path, kind: str) -> Iterator[tuple[str, Any]]:
    """(where, record) of every row of the file, ``where`` naming it for errors."""
    if kind == "jsonl":
        yield from jsonl_records(path)
        return
    if kind == "parquet":
        _, parquet = _pyarrow("reading Parquet")
        table = parquet.read_table(path).to_pylist()
    else:
        saved = all((path / name).is_file() for name in _DATASET_FILES)
        if not saved and not (path / _DATASET_DICT_FILE).is_file():
            raise ValueError(
                f"{path}: not a datasets.save_to_disk folder (no {'/'.join(_DATASET_FILES)}); "
                "give arena-bench, synthetic, a .npz, .jsonl or .parquet file or such a folder"
            )
        datasets = _datasets("reading a datasets folder")
        table = datasets.load_from_disk(str(path))
        if not isinstance(table, datasets.Dataset):
            raise ValueError(
                f"{path} holds several splits ({', '.join(table)}): name one split's folder, "
                f"e.g. {path / next(iter(table))}"
            )
    for number, record in enumerate(table):
        yield f"{path}, row {number}", record


def _sides(record: Any, where: str) -> tuple[str, tuple[tuple[str, str], tuple[str, str]]]:
    """The record's form and its (prompt, response) texts for the chosen and rejected side."""
    if not isinstance(record, dict):
        raise ValueError(
            f"{where}: expected an object with 'chosen' and 'rejected', got {record!r}"
        )
    for key in ("chosen", "rejected"):
        if key not in record:
            raise ValueError(
                f"{where}: no {key!r}; a preference row has 'chosen' and 'rejected', and "
                "'prompt' unless they hold the prompt themselves"
            )
    prompt = record.get("prompt")
    if prompt is None:
        if isinstance(record["chosen"], str):
            raise ValueError(
                f"{where}: no 'prompt', and 'chosen' is plain text, in which the prompt cannot "
                "be told from the response: add a 'prompt' column"
            )
        chosen, rejected = (_implicit_side(record[k], f"{where}: {k!r}") for k in _SIDES)
        return "implicit", (chosen, rejected)
    if isinstance(prompt, str):
        chosen, rejected = ((prompt, _text(record[k], f"{where}: {k!r}")) for k in _SIDES)
        return "standard", (chosen, rejected)
    text = _prompt_text(_messages(prompt, f"{where}: 'prompt'"))
    chosen, rejected = ((text, _reply(record[k], f"{where}: {k!r}")) for k in _SIDES)
    return "conversational", (chosen, rejected)


_SIDES = ("chosen", "rejected")


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, as the row's prompt is, got {describe(value)}")
    return value


def _messages(value: Any, name: str) -> list[tuple[str, str]]:
    """(role, content) of a non-empty list of {"role": str, "content": str} messages."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"{name} must be text or a non-empty list of messages, got {value!r}")
    messages = []
    for message in value:
        if not (
            isinstance(message, dict)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
        ):
            raise ValueError(
                f"{name} must hold messages {{'role': str, 'content': str}}, got {message!r}"
            )
        messages.append((message["role"], message["content"]))
    return messages


def _reply(value: Any, name: str) -> str:
    messages = _messages(value, name)
    if len(messages) != 1 or messages[0][0] != "assistant":
        roles = [role for role, _ in messages]
        raise ValueError(f"{name} must be one assistant message, got the roles {roles}")
    return messages[0][1]


def _implicit_side(value: Any, name: str) -> tuple[str, str]:
    """(prompt, response) of an implicit-prompt side: the prompt's messages, then the reply."""
    messages = _messages(value, name)
    if len(messages) < 2 or messages[-1][0] != "assistant":
        roles = [role for role, _ in messages]
        raise ValueError(
            f"{name} must be the prompt's messages followed by one assistant message, got the "
            f"roles {roles}"
        )
    return _prompt_text(messages[:-1]), messages[-1][1]


def _prompt_text(messages: list[tuple[str, str]]) -> str:
    """A lone user message is its text; several become one text, each as ``role: content``."""
    if len(messages) == 1 and messages[0][0] == "user":
        return messages[0][1]
    return "\n\n".join(f"{role}: {content}" for role, content in messages)


def _embeddings(
    record: dict[str, Any], where: str, dim: int | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Both sides' embeddings from the embedding columns (of ``dim`` values when known)."""
    present = [record.get(column) is not None for column in EMBEDDING_COLUMNS]
    if not any(present):
        return None
    if not all(present):
        given, absent = EMBEDDING_COLUMNS if present[0] else EMBEDDING_COLUMNS[::-1]
        raise ValueError(f"{where}: has {given!r} without {absent!r}; give both or neither")
    chosen, rejected = (_vector(record[c], f"{where}: {c!r}", dim) for c in EMBEDDING_COLUMNS)
    if chosen.size != rejected.size:
        raise ValueError(
            f"{where}: 'chosen_embedding' has {chosen.size} values but 'rejected_embedding' "
            f"has {rejected.size}"
        )
    return chosen, rejected


def _vector(value: Any, name: str, dim: int | None) -> np.ndarray:
    try:
        vector = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a list of numbers, got {value!r:.80}") from None
    if vector.ndim != 1 or vector.size == 0:
        raise ValueError(f"{name} must be a non-empty list of numbers, got shape {vector.shape}")
    if dim is not None and vector.size != dim:
        raise ValueError(f"{name} has {vector.size} values, but the rows before have {dim}")
    if not np.isfinite(vector).all():
        raise ValueError(f"{name} must be finite, got {vector[~np.isfinite(vector)][0]}")
    return vector


@dataclass(frozen=True)
class _Reading:
    """How :func:`load_preferences` and :func:`import_preferences` make the Dataset: the text
    model and the options given for :func:`~activerm_fast.data.embed_texts` (used when the
    rows carry no embeddings), whose prompt-level split applies either way; options not given
    keep embed_texts' and from_arrays' defaults."""

    model: Any
    options: EmbeddingOptions

    def split(self) -> dict[str, Any]:
        """The split options given, for :func:`~activerm_fast.data.from_arrays`."""
        return {key: self.options[key] for key in ("test_fraction", "seed") if key in self.options}


def _dataset(comparisons: _Comparisons, reading: _Reading) -> Dataset:
    """The comparisons as a Dataset: prompts numbered in order of first appearance, and one
    labelled pair per compared pair (:func:`_plurality`)."""
    numbers = {prompt: p for p, prompt in enumerate(dict.fromkeys(comparisons.prompts))}
    prompt_ids = np.array([numbers[prompt] for prompt in comparisons.prompts], np.int64)
    pairs = _plurality(comparisons)
    if comparisons.embeddings is None:
        dataset = _embedded(comparisons, prompt_ids, reading)
    else:
        dataset = from_arrays(comparisons.embeddings, prompt_ids, **reading.split())
    return replace(
        dataset,
        name=comparisons.path.name.split(".")[0],
        pairs=pairs,
        labels=np.ones(len(pairs), np.int64),
        prompt_names=np.arange(len(numbers)),
        prompts=list(numbers),
        responses=comparisons.responses,
    )


def _plurality(comparisons: _Comparisons) -> np.ndarray:
    """One (winner, loser) pair per pair of rows compared, in order of first appearance.

    Every preference row is one vote, as in TRL's trainers, which train on each row. A pair on
    several rows is won by the side chosen on more of them (the rule that merges annotators'
    votes in :mod:`~activerm_fast.data.annotation_tools`), so no comparison is counted twice;
    a pair chosen equally often each way is a tie (``export_preferences(ties="both")`` writes
    a tie so), which the Dataset's 0/1 labels cannot hold: it is left out, with a warning.
    """
    pairs = comparisons.pairs
    keys, first_row, key_of_row, counts = np.unique(
        pair_keys(pairs, int(pairs.max(initial=0)) + 1),
        return_index=True,
        return_inverse=True,
        return_counts=True,
    )
    low_wins = np.bincount(key_of_row, weights=pairs[:, 0] < pairs[:, 1], minlength=keys.size)
    margin = 2 * low_wins - counts  # low's votes minus high's
    order = np.argsort(first_row, kind="stable")
    order = order[margin[order] != 0]
    winner_low = margin[order] > 0
    first = pairs[first_row[order]]
    lo, hi = first.min(axis=1), first.max(axis=1)
    merged = np.stack([np.where(winner_low, lo, hi), np.where(winner_low, hi, lo)], axis=1)
    repeated, ties = int((counts > 1).sum()), int((margin == 0).sum())
    if repeated:
        tied = (
            f"; left out as ties (a Dataset's labels are 0/1), chosen equally often each way: "
            f"{ties}"
            if ties
            else ""
        )
        warnings.warn(
            f"{comparisons.path}: pairs of responses compared on more than one row: {repeated} "
            f"of {keys.size}; each became one labelled pair, won by the side chosen on more of "
            "its rows" + tied,
            stacklevel=4,  # the caller of load_preferences or import_preferences
        )
    return merged.astype(np.int64).reshape(-1, 2)


def _embedded(comparisons: _Comparisons, prompt_ids: np.ndarray, reading: _Reading) -> Dataset:
    """The rows' texts embedded by :func:`~activerm_fast.data.embed_texts` (which reads them
    from a JSONL file): each prompt and each distinct response once."""
    with tempfile.TemporaryDirectory() as folder:
        records = Path(folder) / "records.jsonl"
        with open(records, "w", encoding="utf-8") as out:
            for prompt_id, prompt, response in zip(
                prompt_ids.tolist(), comparisons.prompts, comparisons.responses, strict=True
            ):
                record = {"prompt_id": prompt_id, "prompt": prompt, "response": response}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        try:
            return embed_texts(records, reading.model, **reading.options)
        except ImportError as err:
            raise ImportError(
                f"{comparisons.path} has no embedding columns {EMBEDDING_COLUMNS}, so its texts "
                f"must be embedded: {err}"
            ) from err


# ---- paths and optional libraries -----------------------------------------------------------


def _path_argument(value: Any, name: str) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path, got {describe(value)}")
    if not os.fspath(value):  # Path("") is the current folder
        raise ValueError(f"{name} is empty; name a file or folder")
    return Path(value)


def _file_kind(path: Path, *, writing: bool) -> str:
    """``jsonl``, ``parquet`` or ``folder`` (a ``datasets.save_to_disk`` folder)."""
    if path.is_dir():
        return "folder"
    if path.suffix in (".jsonl", ".parquet"):
        if not writing and not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        return path.suffix[1:]
    if writing and not path.suffix:
        return "folder"
    if not writing and not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    raise ValueError(
        f"{path}: a preference dataset is a .jsonl or .parquet file or a folder of "
        "datasets.save_to_disk" + (" (a path without a suffix)" if writing else "")
    )


def output_kind(path: str | os.PathLike[str], name: str = "path") -> str:
    """What a preference dataset written at ``path`` is, checked before anything is written.

    A ``.jsonl`` or ``.parquet`` file (an existing one is replaced), or a folder of
    ``datasets.save_to_disk``: a path without a suffix that is new, an empty folder, or a
    previous export's folder (only the files save_to_disk writes), which an export replaces
    whole. A folder that holds other files is refused, since an export would be written in
    among them, and so is an existing file without a suffix.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write.
    name : str, default "path"
        The argument's name in error messages (``"--out"`` on the command line).

    Returns
    -------
    str
        ``"jsonl"``, ``"parquet"`` or ``"folder"``.

    Raises
    ------
    TypeError
        If ``path`` is not a path.
    ValueError
        If ``path`` is empty, has another suffix, or is an existing file without a suffix or
        an existing folder that holds other files.

    Examples
    --------
    >>> import os, tempfile
    >>> from activerm_fast.data.preference_data import output_kind
    >>> folder = tempfile.mkdtemp()
    >>> output_kind(os.path.join(folder, "prefs.jsonl")), output_kind(folder)  # folder: empty
    ('jsonl', 'folder')
    >>> open(os.path.join(folder, "notes.txt"), "w").close()
    >>> output_kind(folder, "--out")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --out ... is an existing folder that holds other files; name a new folder or ...
    """
    target = _path_argument(path, name)
    kind = _file_kind(target, writing=True)
    if kind == "folder" and target.exists():
        if not target.is_dir():
            raise ValueError(
                f"{name} {target} is an existing file without a suffix; name a new folder or a "
                ".jsonl/.parquet file"
            )
        saved = (e.is_file() and _SAVED_FILE.fullmatch(e.name) for e in target.iterdir())
        if not all(saved):
            raise ValueError(
                f"{name} {target} is an existing folder that holds other files; name a new "
                "folder or a .jsonl/.parquet file"
            )
    return kind


def is_preference_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names what :func:`load_preferences` reads.

    Parameters
    ----------
    path : str or os.PathLike
        Any path.

    Returns
    -------
    bool
        True for a ``.jsonl`` or ``.parquet`` name or an existing folder.

    Examples
    --------
    >>> import tempfile
    >>> from activerm_fast.data.preference_data import is_preference_path
    >>> [is_preference_path(p) for p in ("a.jsonl", "a.parquet", "a.npz", tempfile.mkdtemp())]
    [True, True, False, True]
    """
    return Path(path).suffix in (".jsonl", ".parquet") or Path(path).is_dir()


def _pyarrow(doing: str) -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as err:
        raise ImportError(f"{doing} needs pyarrow: {_INSTALL}") from err
    return pyarrow, pyarrow.parquet


def _datasets(doing: str) -> Any:
    try:
        import datasets
    except ImportError as err:
        raise ImportError(f"{doing} needs the datasets package: {_INSTALL}") from err
    return datasets
