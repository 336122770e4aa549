"""The production step: read what is labelled, choose the next batch, write it for annotators.

Labelled and batch files share one JSONL record format, so an annotated batch is appended to
the labelled file as it is:

    {"first": 17, "second": 2051, "label": 1, "first_prompt": "q12", "second_prompt": "q40",
     "first_text": "...", "second_text": "..."}

``first``/``second`` are row indices into the dataset, ``label`` is 1 when the first response
wins and 0 when the second does (``null`` in a batch until annotated); the prompt ids and
texts are for the annotators and are ignored when reading.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._validation import (
    known_name,
    labelled_mask,
    nonnegative_pairs,
    seed_argument,
    self_pair_row,
)
from ..model.reward_model import RewardModel
from ..selection.api import FEATURE_CHOICES, STRATEGIES, prompt_features_for, select
from .dataset import Dataset
from .json_files import jsonl_records
from .pairs import candidate_pool


def read_labelled(path: str | os.PathLike[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The labelled pairs of a JSONL file; a missing file means nothing labelled.

    Parameters
    ----------
    path : str or os.PathLike
        A file of records with ``first``, ``second`` and ``label`` (other keys ignored).
    n : int
        Rows of the dataset the indices refer to.

    Returns
    -------
    pairs : np.ndarray
        (M, 2) int64 rows ``(first, second)``.
    labels : np.ndarray
        (M,) int64, 1 when the first response won.

    Raises
    ------
    ValueError
        If a line is not a JSON object, an index is not a row of the ``n``, a label is not
        0 or 1, a record compares a response with itself, or a pair (either way round) is
        labelled on two lines; the message names the line.

    Examples
    --------
    >>> import os, tempfile
    >>> from activerm_fast.data.annotation import read_labelled
    >>> path = os.path.join(tempfile.mkdtemp(), "labelled.jsonl")
    >>> read_labelled(path, 6)[0].shape  # no file yet: nothing labelled
    (0, 2)
    >>> with open(path, "w") as file:
    ...     _ = file.write('{"first": 0, "second": 2, "label": 1}\\n')
    ...     _ = file.write('{"first": 1, "second": 4, "label": 0, "first_text": "hi"}\\n')
    >>> pairs, labels = read_labelled(path, 6)
    >>> pairs.tolist(), labels.tolist()
    ([[0, 2], [1, 4]], [1, 0])
    >>> read_labelled(path, 3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...labelled.jsonl, line 2: 'second' = 4 is out of range for 3 responses
    """
    path = Path(path)
    if not path.exists():
        return np.empty((0, 2), np.int64), np.empty(0, np.int64)
    pairs, labels, lines = [], [], []
    once = _OncePerPair()
    for where, record in jsonl_records(path):
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        pair = tuple(_row_index(record, key, n, where) for key in ("first", "second"))
        label = record.get("label")
        if isinstance(label, bool) or label not in (0, 1):
            raise ValueError(
                f"{where}: label must be 1 (first wins) or 0 (second wins), got {label!r}"
            )
        once.add(pair, where)
        pairs.append(pair)
        labels.append(label)
        lines.append(where)
    checked = np.array(pairs, np.int64).reshape(-1, 2)
    row = self_pair_row(checked)
    if row is not None:
        raise ValueError(f"{lines[row]}: first and second are the same response {pairs[row][0]}")
    return checked, np.array(labels, np.int64)


class _OncePerPair:
    """The line of each pair of an annotation file read so far, either way round: a pair on a
    second line (a batch appended twice, a pair labelled again) is a ValueError naming both.

    Examples
    --------
    >>> once = _OncePerPair()
    >>> once.add((3, 7), "labelled.jsonl, line 1")
    >>> once.add((7, 3), "labelled.jsonl, line 4")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: labelled.jsonl, line 4: the pair (7, 3) is labelled at labelled.jsonl, line 1 ...
    """

    def __init__(self) -> None:
        self.lines: dict[tuple[int, int], str] = {}

    def add(self, pair: tuple[int, ...], where: str) -> None:
        key = (min(pair), max(pair))
        if key in self.lines:
            raise ValueError(
                f"{where}: the pair ({pair[0]}, {pair[1]}) is labelled at {self.lines[key]} too; "
                "keep one record per pair (import merges the votes of every annotator into one)"
            )
        self.lines[key] = where


def _row_index(record: dict[str, Any], key: str, n: int, where: str) -> int:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: {key!r} must be a row index, got {value!r}")
    if not 0 <= value < n:
        raise ValueError(f"{where}: {key!r} = {value} is out of range for {n} responses")
    return value


def write_batch(path: str | os.PathLike[str], dataset: Dataset, pairs: np.ndarray) -> None:
    """Write one unlabelled record per pair, with prompt ids and texts where the dataset has them.

    Parameters
    ----------
    path : str or os.PathLike
        The JSONL file to write (replaced).
    dataset : Dataset
        The dataset the pairs' rows index.
    pairs : np.ndarray
        (k, 2) rows of the batch, e.g. from :func:`next_batch`.

    Raises
    ------
    OSError
        If ``path`` cannot be opened for writing.

    Examples
    --------
    >>> import os, tempfile
    >>> from activerm_fast.data.annotation import read_labelled, write_batch
    >>> import numpy as np
    >>> import activerm_fast as arm
    >>> embeddings = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    >>> data = arm.from_arrays(embeddings, ["a", "a", "b", "b", "c", "c"], gold=np.arange(6.0))
    >>> path = os.path.join(tempfile.mkdtemp(), "batch.jsonl")
    >>> write_batch(path, data, np.array([[0, 2], [1, 4]]))
    >>> print(open(path).read(), end="")
    {"first": 0, "second": 2, "label": null, "first_prompt": "a", "second_prompt": "b"}
    {"first": 1, "second": 4, "label": null, "first_prompt": "a", "second_prompt": "c"}
    """
    with open(path, "w", encoding="utf-8") as f:
        for i, j in pairs.tolist():
            f.write(json.dumps(batch_record(dataset, i, j), ensure_ascii=False) + "\n")


def batch_record(dataset: Dataset, first: int, second: int) -> dict[str, Any]:
    """The unlabelled record of the pair (``first``, ``second``) that annotators see.

    Rows, prompt ids, and texts where the dataset has them (the annotation-tool adapters send
    the same record).

    Parameters
    ----------
    dataset : Dataset
        The dataset the rows index.
    first, second : int
        The two rows.

    Returns
    -------
    dict
        ``first``, ``second``, ``label`` (None), ``first_prompt`` and ``second_prompt``,
        and ``{side}_prompt_text`` / ``{side}_text`` when the dataset has texts.

    Examples
    --------
    >>> import numpy as np
    >>> from activerm_fast import Dataset
    >>> from activerm_fast.data.annotation import batch_record
    >>> texts = {"prompts": ["2+2?"], "responses": ["4", "5"]}
    >>> tiny = Dataset("tiny", np.zeros((2, 1)), np.array([0, 0]), **texts)  # one prompt
    >>> batch_record(tiny, 1, 0)  # doctest: +NORMALIZE_WHITESPACE
    {'first': 1, 'second': 0, 'label': None,
     'first_prompt': 0, 'first_prompt_text': '2+2?', 'first_text': '5',
     'second_prompt': 0, 'second_prompt_text': '2+2?', 'second_text': '4'}
    """
    assert dataset.prompt_names is not None, "set by Dataset.__post_init__"
    record: dict[str, Any] = {"first": first, "second": second, "label": None}
    for side, row in (("first", first), ("second", second)):
        prompt = int(dataset.prompt_ids[row])
        record[f"{side}_prompt"] = _plain(dataset.prompt_names[prompt])
        if dataset.prompts is not None:
            record[f"{side}_prompt_text"] = dataset.prompts[prompt]
        if dataset.responses is not None:
            record[f"{side}_text"] = dataset.responses[row]
    return record


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class BatchPlan:
    """What the next batch is chosen with, as :func:`plan_batch` returns it.

    Attributes
    ----------
    strategy : str
        The strategy that runs (``xtx`` in place of a model-based one before any label).
    features : np.ndarray
        What the design sees: (E, n, d) hidden features or the (n, D) embeddings.
    rewards : np.ndarray or None
        (E, n) rewards of the model, None before any model exists.
    labelled : np.ndarray or None
        (M, 2) labelled pairs the batch must not repeat.
    note : str
        How the model came about.

    Examples
    --------
    >>> import numpy as np
    >>> import activerm_fast as arm
    >>> from activerm_fast.data.annotation import plan_batch
    >>> data = arm.synthetic(3, 2, 1, 2, dim=4)
    >>> plan = plan_batch(data, np.empty((0, 2), np.int64), np.empty(0, np.int64))
    >>> plan.strategy, plan.rewards is None, plan.features.shape  # the (n, D) embeddings
    ('xtx', True, (8, 4))
    >>> plan.note
    "no labels yet: chose with 'xtx' on the embeddings"
    """

    strategy: str
    features: Any
    rewards: Any | None
    labelled: np.ndarray | None
    note: str


def plan_batch(
    dataset: Dataset,
    labelled_pairs: np.ndarray,
    labels: np.ndarray,
    *,
    strategy: str = "past-dopt-greedy",
    ensemble: int = 3,
    model_path: str | os.PathLike[str] | None = None,
    reuse_model: bool = False,
    features: str = "hidden",
    seed: int = 0,
    precision: str = "float32",
) -> BatchPlan:
    """The model side of :func:`next_batch`: what the next batch is chosen with.

    Fit the model on the labelled pairs (or load it from ``model_path`` with ``reuse_model``;
    saved to ``model_path`` when given) and take its features and rewards in one forward
    pass; ``features`` is what the design sees, the model's
    last hidden layer (``"hidden"``) or the embeddings (``"embedding"``), as in
    :func:`~activerm_fast.select_with_model`. Before any label exists there is no model:
    model-free strategies run on the embeddings, the others fall back to ``xtx`` (D-optimal
    exploration of the embedding space).

    Parameters
    ----------
    dataset : Dataset
        The responses.
    labelled_pairs : np.ndarray
        (M, 2) pairs labelled so far.
    labels : np.ndarray
        (M,) their labels, 1 when the first response won.
    strategy : str, default "past-dopt-greedy"
        A name in :data:`~activerm_fast.STRATEGIES`.
    ensemble : int, default 3
        Members of a fitted model (:class:`~activerm_fast.RewardModel` with its default
        hidden widths); a reused model keeps its own, which the note names.
    model_path : str or os.PathLike, optional
        Where the fitted model is saved, or read from with ``reuse_model``.
    reuse_model : bool, default False
        Load the model at ``model_path`` (when it exists) instead of fitting one.
    features : {"hidden", "embedding"}, default "hidden"
        What the design sees.
    seed : int, default 0
        Seeds the fit.
    precision : {"float32", "bfloat16", "auto"}, default "float32"
        What the fit multiplies in (:meth:`~activerm_fast.RewardModel.fit`).

    Returns
    -------
    BatchPlan
        The strategy, features, rewards and labelled pairs to select with, and a note.

    Raises
    ------
    ValueError
        If ``features`` is unknown, the seed negative, the labels invalid for a fit, or a
        reused model was fitted on embeddings of another dimension.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import activerm_fast as arm
    >>> from activerm_fast.data.annotation import plan_batch
    >>> data = arm.synthetic(4, 3, 1, 3, dim=8, seed=2)  # 15 responses
    >>> path = os.path.join(tempfile.mkdtemp(), "model.pt")
    >>> arm.RewardModel(8, hidden=(4,), ensemble=2).save(path)  # fitted on earlier labels
    >>> labelled, labels = np.array([[0, 1], [3, 5]]), np.array([1, 0])
    >>> plan = plan_batch(data, labelled, labels, model_path=path, reuse_model=True)
    >>> plan.strategy, plan.features.shape, plan.rewards.shape  # the model's hidden layer
    ('past-dopt-greedy', (2, 15, 4), (2, 15))
    >>> plan.note  # doctest: +ELLIPSIS
    "model of 2 members loaded from ...model.pt; chose with 'past-dopt-greedy'"
    """
    seed = seed_argument(seed)
    design_on = known_name(features, FEATURE_CHOICES, "features")
    model_file = model_path is not None and Path(model_path).exists()
    if len(labelled_pairs) == 0 and not (reuse_model and model_file):
        chosen = "xtx" if STRATEGIES[strategy].needs_model else strategy
        note = f"no labels yet: chose with {chosen!r} on the embeddings"
        return BatchPlan(chosen, dataset.embeddings, None, None, note)
    if reuse_model and model_path is not None and model_file:
        model = RewardModel.load(model_path)
        if model.input_dim != dataset.dim:
            raise ValueError(
                f"{model_path} holds a model of {model.input_dim}-dimensional embeddings, but "
                f"{dataset.name} has {dataset.dim}-dimensional ones"
            )
        # its own members, whatever ``ensemble`` says: the note shows how many
        note = f"model of {model.ensemble} members loaded from {model_path}"
    else:
        model = RewardModel(dataset.dim, ensemble=ensemble, seed=seed)
        model.fit(dataset.embeddings, labelled_pairs, labels, seed=seed, precision=precision)
        note = f"model fitted on {len(labels)} labelled pairs"
        if model_path is not None:
            model.save(model_path)
            note += f", saved to {model_path}"
    hidden, rewards = model.features_and_rewards(dataset.embeddings)
    note = f"{note}; chose with {strategy!r}"
    if design_on == "embedding":
        return BatchPlan(
            strategy, dataset.embeddings, rewards, labelled_pairs, note + " on the embeddings"
        )
    return BatchPlan(strategy, hidden, rewards, labelled_pairs, note)


def without_pairs(candidates: np.ndarray, exclude: Any | None) -> np.ndarray:
    """The (P, 2) ``candidates`` that are none of the ``exclude`` pairs, in either order.

    Parameters
    ----------
    candidates : np.ndarray
        (P, 2) non-negative int64 candidate rows.
    exclude : array_like, optional
        (M, 2) pairs to drop; None keeps every candidate.

    Returns
    -------
    np.ndarray
        The kept rows, in their order.

    Raises
    ------
    ValueError
        If ``exclude`` has a negative index or the wrong shape.

    Examples
    --------
    >>> import numpy as np
    >>> from activerm_fast.data.annotation import without_pairs
    >>> candidates = np.array([[0, 1], [2, 3], [4, 5]])
    >>> without_pairs(candidates, np.array([[3, 2]])).tolist()  # (2, 3) in the other order
    [[0, 1], [4, 5]]
    """
    if exclude is None:
        return candidates
    held = nonnegative_pairs(exclude, "exclude")
    n = int(max(candidates.max(initial=-1), held.max(initial=-1))) + 1  # bounds both for the keys
    mask = labelled_mask(torch.from_numpy(candidates), torch.from_numpy(held), n)
    kept: np.ndarray = candidates[~mask.numpy()]
    return kept


def next_batch(
    dataset: Dataset,
    labelled_pairs: np.ndarray,
    labels: np.ndarray,
    k: int,
    *,
    strategy: str = "past-dopt-greedy",
    pool: str = "cross",
    pool_size: int = 200_000,
    ensemble: int = 3,
    model_path: str | os.PathLike[str] | None = None,
    reuse_model: bool = False,
    ridge: float = 1e-3,
    ridge_mode: str = "absolute",
    features: str = "hidden",
    seed: int = 0,
    lazy: bool | str = "auto",
    exclude: Any | None = None,
    per_prompt: int | None = None,
    precision: str = "float32",
    uncertainty: str = "ensemble",
) -> tuple[np.ndarray, str]:
    """The next ``k`` pairs (rows of the whole dataset) to annotate, and a note on how.

    See :func:`plan_batch` for the model and ``features``; ``ridge``, ``ridge_mode``,
    ``lazy`` and ``uncertainty`` are as in :func:`~activerm_fast.select`. ``exclude`` (M, 2)
    are pairs never to propose, in either order, though not labelled (still waiting in an
    annotation tool, or tied there): they leave the candidate pool, not the model's training
    set.

    Parameters
    ----------
    dataset : Dataset
        The responses.
    labelled_pairs, labels : np.ndarray
        The (M, 2) pairs labelled so far and their (M,) labels.
    k : int
        Pairs to choose.
    strategy, ensemble, model_path, reuse_model, features, seed, precision
        As in :func:`plan_batch`.
    pool : {"cross", "within"}, default "cross"
        The candidate pool (:func:`~activerm_fast.pairs.candidate_pool`).
    pool_size : int, default 200_000
        Candidates sampled for ``pool="cross"``.
    ridge, ridge_mode, lazy
        As in :func:`~activerm_fast.select`.
    exclude : array_like, optional
        (M, 2) pairs never to propose.
    per_prompt : int, optional
        At most this many pairs per prompt of the dataset (None: no limit).
    uncertainty : {"ensemble", "laplace"}, default "ensemble"
        The model uncertainty of ``bald``, ``bal-pm`` and the per-prompt rules: the
        ensemble's spread (at least 2 members) or the Laplace posterior of the last layer
        (one member will do).

    Returns
    -------
    pairs : np.ndarray
        (k, 2) rows of the dataset to annotate, in the order chosen.
    note : str
        How they were chosen.

    Raises
    ------
    ValueError
        As :func:`plan_batch` and :func:`~activerm_fast.select`.

    Examples
    --------
    >>> import numpy as np
    >>> from activerm_fast import from_arrays
    >>> from activerm_fast.data.annotation import next_batch
    >>> data = from_arrays(np.eye(6, dtype=np.float32), [0, 0, 1, 1, 2, 2])  # 3 prompts of 2
    >>> nothing = np.empty((0, 2), np.int64)
    >>> batch, note = next_batch(data, nothing, nothing[:, 0], 2, pool="within")
    >>> batch.tolist(), note
    ([[0, 1], [2, 3]], "no labels yet: chose with 'xtx' on the embeddings")
    >>> next_batch(data, nothing, nothing[:, 0], 1, pool="within", exclude=batch)[0].tolist()
    [[4, 5]]
    """
    plan = plan_batch(
        dataset,
        labelled_pairs,
        labels,
        strategy=strategy,
        ensemble=ensemble,
        model_path=model_path,
        reuse_model=reuse_model,
        features=features,
        seed=seed,
        precision=precision,
    )
    return batch_of_plan(
        dataset,
        plan,
        k,
        pool=pool,
        pool_size=pool_size,
        ridge=ridge,
        ridge_mode=ridge_mode,
        seed=seed,
        lazy=lazy,
        exclude=exclude,
        per_prompt=per_prompt,
        uncertainty=uncertainty,
    )


def batch_of_plan(
    dataset: Dataset,
    plan: BatchPlan,
    k: int,
    *,
    pool: str = "cross",
    pool_size: int = 200_000,
    ridge: float = 1e-3,
    ridge_mode: str = "absolute",
    seed: int = 0,
    lazy: bool | str = "auto",
    exclude: Any | None = None,
    per_prompt: int | None = None,
    uncertainty: str = "ensemble",
) -> tuple[np.ndarray, str]:
    """The next ``k`` pairs (rows of ``dataset``) chosen as ``plan`` says, and its note.

    The one step after the plan, whatever made it: :func:`plan_batch` (the package's reward
    model) or :func:`~activerm_fast.data.reward_head.head_plan` (the user's reward model's
    own head). The candidates are ``pool`` (``"cross"`` or ``"within"``, ``pool_size``
    cross-prompt pairs drawn with ``seed``) less ``exclude``; the other options are
    :func:`~activerm_fast.select`'s.

    Parameters
    ----------
    dataset : Dataset
        The dataset the pairs index.
    plan : BatchPlan
        The strategy, features, rewards and labelled pairs to choose with.
    k : int
        Pairs to choose.
    pool, pool_size, ridge, ridge_mode, seed, lazy, exclude, per_prompt, uncertainty
        As in :func:`next_batch`.

    Returns
    -------
    batch : np.ndarray
        (k, 2) int64 rows of ``dataset``, in the order chosen.
    note : str
        ``plan.note``.

    Raises
    ------
    ValueError
        As :func:`~activerm_fast.select` raises it.

    Examples
    --------
    >>> import numpy as np
    >>> from activerm_fast.data import from_arrays
    >>> dataset = from_arrays(np.eye(6, dtype=np.float32), np.arange(6) // 2)
    >>> plan = BatchPlan("xtx", dataset.embeddings, None, None, "chose with 'xtx'")
    >>> batch, note = batch_of_plan(dataset, plan, 2, pool="within", per_prompt=1)
    >>> sorted(dataset.prompt_ids[batch[:, 0]].tolist()), note
    ([0, 1], "chose with 'xtx'")
    """
    candidates = without_pairs(
        candidate_pool(dataset.prompt_ids, pool, pool_size, seed, name="pool_size"), exclude
    )
    selection = select(
        plan.strategy,
        features=plan.features,
        pairs=candidates,
        k=k,
        rewards=plan.rewards,
        labelled=plan.labelled,
        ridge=ridge,
        ridge_mode=ridge_mode,
        seed=seed,
        prompt_features=prompt_features_for(plan.strategy, dataset),
        lazy=lazy,
        per_prompt=per_prompt,
        prompt_ids=dataset.prompt_ids,
        uncertainty=uncertainty,
    )
    return candidates[selection.indices], plan.note
