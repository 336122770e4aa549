"""The entry points of selection: :func:`select` and :func:`select_with_model`.

They validate every input once, check it against what the strategy declares it needs
(:data:`~activerm_fast.selection.registry.STRATEGIES`), and hand the result back in the
caller's array type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import torch

from .. import _launch
from .. import _validation as v
from .._threads import selection_threads, selection_work
from ..data.dataset import Dataset
from ..data.implicit_pool import generated_pairs
from ..data.pairs import prompt_codes
from ..kernels import DEFAULT_PRIOR, Selection, export
from . import baselines, dopt, field_rules  # noqa: F401  (each registers its strategies)
from . import design as _design
from . import uncertainty as _uncertainty_strategies  # noqa: F401
from .inputs import SelectionInputs
from .registry import STRATEGIES, Strategy
from .ridge import RIDGE_MODES

if TYPE_CHECKING:  # annotations only (typing has both from Python 3.11)
    from typing_extensions import Required, Unpack

__all__ = ["FEATURE_CHOICES", "RIDGE_MODES", "STRATEGIES", "select", "select_with_model"]

# what select_with_model designs on: the model's last hidden layer or the embeddings given
FEATURE_CHOICES = ("hidden", "embedding")
# lambda of F0 = lambda I unless told otherwise: greedy_logdet's default prior
DEFAULT_RIDGE = DEFAULT_PRIOR
# where the uncertainty of bald, bal-pm and the per-prompt rules comes from
UNCERTAINTY = ("ensemble", "laplace")


class DesignOptions(TypedDict, total=False):
    """The options of a selection beside its arrays: what :func:`select_with_model` passes on
    to :func:`select` as they are."""

    labelled: Any | None
    ridge: float
    ridge_mode: str
    seed: int
    prompt_features: Any | None
    lazy: bool | str
    per_prompt: int | None
    prompt_ids: Any | None
    uncertainty: str


class SelectOptions(DesignOptions, total=False):
    """The keyword arguments of :func:`select`, which :func:`activerm_fast.distributed.select`
    takes too: one list for both entry points (:func:`validated` reads them)."""

    features: Required[Any]
    pairs: Required[Any]
    k: Required[int]
    rewards: Any | None


def validated(strategy: str, **options: Unpack[SelectOptions]) -> SelectionInputs:
    """:func:`select`'s arguments but ``k`` (checked against the pool it is taken from)
    validated once and checked against what the strategy declares
    it needs (:data:`STRATEGIES`), as the inputs every strategy runs on: members (E, n, d),
    pairs, rewards (E, n), labelled pairs, the mask of the candidates already labelled (None
    when there are none), the ridge as given (c in the relative mode: see
    :meth:`SelectionInputs.resolved`) and the other options. Defaults are :func:`select`'s."""
    entry = STRATEGIES[v.known_name(strategy, STRATEGIES, "strategy")]
    features = options["features"]
    members = v.features_tensor(features, members=True)
    n = members.shape[1]
    device = members.device
    generated = generated_pairs(options["pairs"], n, device)
    if generated is None:
        p = v.pairs_tensor(options["pairs"], n, device, unique=True)
    else:
        check_implicit(entry, options)
        p = torch.empty((0, 2), dtype=torch.int64, device=device)
    rewards = options.get("rewards")
    r = None if rewards is None else v.rewards_tensor(rewards, n, device)
    if entry.needs_rewards and r is None:
        raise ValueError(f"strategy {strategy!r} needs rewards, got rewards=None")
    uncertainty = v.known_name(options.get("uncertainty", "ensemble"), UNCERTAINTY, "uncertainty")
    if entry.needs_ensemble and uncertainty == "laplace" and r is None:
        raise ValueError(f"strategy {strategy!r} needs rewards, got rewards=None")
    if entry.needs_ensemble and uncertainty == "ensemble" and (r is None or r.shape[0] < 2):
        got = 0 if r is None else r.shape[0]
        raise ValueError(
            f"strategy {strategy!r} needs rewards of an ensemble of at least 2 members, got {got}; "
            "or pass uncertainty='laplace' (the Laplace posterior of the last layer)"
        )
    if r is not None and members.shape[0] not in (1, r.shape[0]):
        raise ValueError(
            f"features have {members.shape[0]} ensemble members but rewards have {r.shape[0]}"
        )
    if r is not None and r.shape[0] > _launch.MAX_MEMBERS:
        raise ValueError(
            f"rewards have {r.shape[0]} ensemble members; "
            f"at most {_launch.MAX_MEMBERS} are supported"
        )
    prompts = validated_prompt_ids(options.get("prompt_ids"), members)
    quota = validated_quota(options.get("per_prompt"), options.get("prompt_ids"), members)
    labelled = options.get("labelled")
    done = (
        None if labelled is None else v.pairs_tensor(labelled, n, device, "labelled", distinct=True)
    )
    excluded = None
    if done is not None and done.shape[0] and p.shape[0]:  # a generated pool's: found later
        excluded = v.labelled_mask(p, done, n)
    return SelectionInputs(
        members=members,
        pairs=p,
        rewards=r,
        labelled=done,
        excluded=excluded,
        ridge=v.positive_scalar(options.get("ridge", DEFAULT_RIDGE), "ridge"),
        ridge_mode=v.known_name(options.get("ridge_mode", "absolute"), RIDGE_MODES, "ridge_mode"),
        seed=v.seed_argument(options.get("seed", 0)),
        strategy=strategy,
        prompt_features=validated_prompts(options.get("prompt_features"), members),
        lazy=v.lazy_argument(options.get("lazy", "auto")),
        quota=quota,
        prompt_of=None if prompts is None else prompts[0],
        uncertainty=uncertainty,
        generated=generated,
    )


# an implicit pool's pairs, stored: each once (the pool may repeat one, a stored pool may not)
_STORED = "np.unique(np.sort(pairs.materialize(), axis=1), axis=0)"


def check_implicit(entry: Strategy, options: SelectOptions) -> None:
    """A ValueError for the options an implicit pool cannot run with."""
    if not entry.implicit:
        runs = sorted(name for name, s in STRATEGIES.items() if s.implicit)
        raise ValueError(
            f"strategy {entry.name!r} needs stored pairs; an implicit pool runs {runs} "
            f"(pass {_STORED} for the others)"
        )
    if options.get("per_prompt") is not None:
        raise ValueError(f"per_prompt needs stored pairs; pass {_STORED}")
    if options.get("ridge_mode", "absolute") != "absolute":
        raise ValueError(f"ridge_mode='relative' needs stored pairs; pass {_STORED}")
    if options.get("lazy", "auto") is True:
        raise ValueError("lazy=True needs stored pairs; an implicit pool runs the dense sweep")


def prompt_features_for(strategy: str, dataset: Dataset) -> np.ndarray | None:
    """Each response's prompt feature in ``dataset`` when ``strategy`` uses them (bal-pm),
    else None: the ``prompt_features`` to pass to :func:`select`."""
    if not STRATEGIES[strategy].uses_prompt_features:
        return None
    features: np.ndarray = dataset.prompt_features()[dataset.prompt_ids]
    return features


def validated_prompts(prompt_features: Any | None, members: torch.Tensor) -> torch.Tensor | None:
    """``prompt_features`` (n, q) validated: one row per response of ``members`` (E, n, d), on
    their device."""
    if prompt_features is None:
        return None
    prompts = v.embeddings_tensor(prompt_features, "prompt_features", device=members.device)
    if prompts.shape[0] != members.shape[1]:
        raise ValueError(
            f"prompt_features must have one row per response ({members.shape[1]}), "
            f"got {prompts.shape[0]}"
        )
    return prompts


def validated_quota(
    per_prompt: Any | None, prompt_ids: Any | None, members: torch.Tensor
) -> _design.PromptQuota | None:
    """The per-prompt quota of ``per_prompt`` (a positive int, or None for none) over
    ``prompt_ids`` (n,), the prompt of each response of ``members`` (E, n, d): any ints or
    strings, mapped to 0 .. prompts - 1 on the members' device.

    Examples
    --------
    >>> import torch
    >>> quota = validated_quota(1, ["a", "b", "a"], torch.zeros(1, 3, 2))
    >>> quota.limit, quota.prompt_of.tolist(), quota.prompts
    (1, [0, 1, 0], 2)
    >>> validated_quota(0, [0, 1, 0], torch.zeros(1, 3, 2))
    Traceback (most recent call last):
    ...
    ValueError: per_prompt must be a positive integer, got 0
    """
    if per_prompt is None:
        return None
    limit = v.positive_integer(per_prompt, "per_prompt")
    if prompt_ids is None:
        raise ValueError(
            f"per_prompt={limit} needs prompt_ids, the prompt of each response; got prompt_ids=None"
        )
    prompts = validated_prompt_ids(prompt_ids, members)
    assert prompts is not None
    # a quota beyond int64 is no quota the engine's counts could reach: the same as its max
    return _design.PromptQuota(min(limit, torch.iinfo(torch.int64).max), *prompts)


def validated_prompt_ids(
    prompt_ids: Any | None, members: torch.Tensor
) -> tuple[torch.Tensor, int] | None:
    """``prompt_ids`` (n,), the prompt of each response of ``members`` (E, n, d), as int64
    0 .. prompts - 1 on their device, and the number of prompts (None when not given).

    Examples
    --------
    >>> import torch
    >>> validated_prompt_ids(["b", "a", "b"], torch.zeros(1, 3, 2))
    (tensor([1, 0, 1]), 2)
    """
    if prompt_ids is None:
        return None
    if isinstance(prompt_ids, torch.Tensor):
        prompt_ids = prompt_ids.detach().cpu().numpy()
    ids = np.asarray(prompt_ids)
    n = members.shape[1]
    if ids.ndim != 1 or ids.shape[0] != n:
        raise ValueError(
            f"prompt_ids must have shape ({n},), one prompt per response, got {ids.shape}"
        )
    codes = prompt_codes(ids)
    prompt_of = torch.as_tensor(codes, device=members.device)
    return prompt_of, int(codes.max()) + 1 if codes.size else 0


def select(
    strategy: str,
    *,
    features: Any,
    pairs: Any,
    k: int,
    rewards: Any | None = None,
    labelled: Any | None = None,
    ridge: float = DEFAULT_RIDGE,
    ridge_mode: str = "absolute",
    seed: int = 0,
    prompt_features: Any | None = None,
    lazy: bool | str = "auto",
    per_prompt: int | None = None,
    prompt_ids: Any | None = None,
    uncertainty: str = "ensemble",
) -> Selection:
    """Choose ``k`` pairs of the candidate ``pairs`` to label next.

    ``features`` (n, d) are the reward model's last-layer features, or (E, n, d) one matrix per
    ensemble member: ``ensemble-dopt-greedy`` uses every member's, the other strategies the
    first member's. ``rewards`` (n,) or (E, n) are the model's rewards (needed by every
    strategy but ``random``, ``xtx`` and ``coreset``); Fisher weights are their ensemble mean.
    ``labelled`` (M, 2) are the pairs labelled so far: they enter F0 of the past-aware
    strategies with their current Fisher weights, seed the core-set centres, and are never
    chosen again. ``ridge`` is lambda in F0 = lambda I with ``ridge_mode="absolute"``; with
    ``"relative"`` it is c in lambda = c tr(F_L)/d, F_L the labelled pairs' Fisher information
    at the given rewards and the first member's features (one average candidate pair's when
    nothing is labelled), so lambda follows the features' scale. ``seed`` drives
    ``random``/``coreset``. ``prompt_features`` (n, q) is the feature of the prompt each
    response answers (rows of one prompt equal), used by ``bal-pm``
    (:meth:`~activerm_fast.data.Dataset.prompt_features` gives them for a dataset); without
    them ``bal-pm`` treats every response as its own prompt, placed at its ``features``.
    ``lazy`` is the greedy strategies' sweep (see :func:`~activerm_fast.greedy_logdet`): the
    same picks either way. ``per_prompt`` m allows at most m chosen pairs per prompt
    (``prompt_ids`` (n,) names each response's prompt; a cross-prompt pair counts against both
    of its prompts): in the greedy engine a partition-matroid constraint (a prompt's remaining
    pairs are masked once it is full), in the other strategies their ranking or draw taken in
    order while the prompts have room.

    Parameters
    ----------
    strategy : str
        A name in :data:`~activerm_fast.STRATEGIES` (e.g. ``"dopt-greedy"``, ``"random"``).
    features : np.ndarray or torch.Tensor
        (n, d) or (E, n, d) float32, float64, float16 or bfloat16 last-layer features.
    pairs : np.ndarray or torch.Tensor
        (P, 2) int32 or int64 candidate rows ``(i, j)``, no pair given twice.
    k : int
        Number of pairs to choose, at most the candidates not labelled.
    rewards : np.ndarray or torch.Tensor, optional
        (n,) or (E, n) rewards of the current model.
    labelled : np.ndarray or torch.Tensor, optional
        (M, 2) pairs labelled so far.
    ridge : float, default 1e-3
        lambda (``"absolute"``) or c (``"relative"``), positive.
    ridge_mode : {"absolute", "relative"}, default "absolute"
        How ``ridge`` sets lambda.
    seed : int, default 0
        Seeds ``random`` and ``coreset``.
    prompt_features : np.ndarray or torch.Tensor, optional
        (n, q) feature of each response's prompt, for ``bal-pm``.
    lazy : bool or "auto", default "auto"
        The greedy strategies' sweep.
    per_prompt : int, optional
        At most this many chosen pairs per prompt (None: no limit).
    prompt_ids : array-like, optional
        (n,) the prompt of each response (ints or strings), needed with ``per_prompt`` and by
        the rules that choose within each prompt (``max-min``, ``dts``, ...:
        :mod:`~activerm_fast.selection.field_rules`).
    uncertainty : {"ensemble", "laplace"}, default "ensemble"
        The model uncertainty of ``bald``, ``bal-pm`` and the per-prompt rules: the ensemble
        members' spread (at least 2 members), or a Bayesian last layer, the Laplace posterior
        of theta on the first member's features with lambda = the ridge and the Fisher
        information of ``labelled`` (:mod:`~activerm_fast.model.laplace`; one member will do).

    Returns
    -------
    Selection
        Positions in ``pairs`` in the order chosen, the log-det gain of each choice given
        the ones before it, and log det of the final design; arrays of the type of
        ``features``.

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype.
    ValueError
        If the strategy is unknown, it needs ``rewards`` (or an ensemble of them) that are
        not given, a shape or index is wrong, a pair is repeated, or ``k`` exceeds the
        candidates not labelled.

    Examples
    --------
    >>> import numpy as np
    >>> import activerm_fast as arm
    >>> features = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    >>> rewards = features[:, 0]
    >>> pool = np.array([[i, j] for i in range(6) for j in range(i + 1, 6)])  # 15 pairs
    >>> batch = arm.select("dopt-greedy", features=features, pairs=pool, k=3, rewards=rewards)
    >>> batch.indices.tolist(), bool(np.all(np.diff(batch.gains) <= 0))
    ([8, 10, 2], True)

    Labelled pairs are never chosen again (past-aware strategies also count their
    information), and ``xtx`` is :func:`~activerm_fast.greedy_logdet` with unit weights:

    >>> past = arm.select(
    ...     "past-dopt-greedy", features=features, pairs=pool, k=3, rewards=rewards,
    ...     labelled=pool[[8, 10]],
    ... )
    >>> past.indices.tolist()
    [2, 0, 5]
    >>> arm.select("xtx", features=features, pairs=pool, k=3).indices.tolist()
    [8, 9, 13]
    >>> arm.greedy_logdet(features, pool, 3, prior=1e-3).indices.tolist()
    [8, 9, 13]
    >>> arm.select("dopt-greedy", features=features, pairs=pool, k=3)
    Traceback (most recent call last):
    ...
    ValueError: strategy 'dopt-greedy' needs rewards, got rewards=None

    With at most one pair per prompt (responses 0-1, 2-3 and 4-5 answer prompts a, b and c),
    the first pick (1, 5) fills prompts a and c, and only a pair of prompt b is left:

    >>> quota = arm.select(
    ...     "dopt-greedy", features=features, pairs=pool, k=2, rewards=rewards,
    ...     per_prompt=1, prompt_ids=["a", "a", "b", "b", "c", "c"],
    ... )
    >>> pool[quota.indices].tolist()
    [[1, 5], [2, 3]]
    """
    with selection_threads(*selection_work(features, pairs)):
        inputs = validated(
            strategy,
            features=features,
            pairs=pairs,
            k=k,
            rewards=rewards,
            labelled=labelled,
            ridge=ridge,
            ridge_mode=ridge_mode,
            seed=seed,
            prompt_features=prompt_features,
            lazy=lazy,
            per_prompt=per_prompt,
            prompt_ids=prompt_ids,
            uncertainty=uncertainty,
        )
        k = v.budget(k, inputs.candidates.shape[0], inputs.excluded)
        result = STRATEGIES[strategy].choose(inputs.resolved(), k)
    as_numpy = v.is_numpy_like(features)
    return Selection(
        export(result.indices, as_numpy), export(result.gains, as_numpy), result.logdet
    )


def select_with_model(
    strategy: str,
    model: Any,
    embeddings: Any,
    pairs: Any,
    k: int,
    *,
    features: str = "hidden",
    **options: Unpack[DesignOptions],
) -> Selection:
    """:func:`select` with the features and rewards of a fitted reward model.

    One line for any strategy: the model's ``features_and_rewards(embeddings)`` give the
    design's features and the rewards (Fisher weights are their ensemble mean).

    Parameters
    ----------
    strategy : str
        A name in :data:`~activerm_fast.STRATEGIES`.
    model : RewardModel
        A fitted :class:`~activerm_fast.model.RewardModel` (or any object with its
        ``features_and_rewards``).
    embeddings : np.ndarray or torch.Tensor
        (n, D) embeddings of the responses.
    pairs : np.ndarray or torch.Tensor
        (P, 2) candidate rows ``(i, j)``.
    k : int
        Number of pairs to choose.
    labelled, ridge, ridge_mode, seed, prompt_features, lazy, per_prompt, prompt_ids, uncertainty
        As in :func:`select`.
    features : {"hidden", "embedding"}, default "hidden"
        What the design sees: the model's last hidden layer (one matrix per member) or the
        embeddings themselves (Fisher weights still from the model's rewards).

    Returns
    -------
    Selection
        As :func:`select` returns it.

    Raises
    ------
    TypeError, ValueError
        As :func:`select`, and a ValueError for an unknown ``features``.

    Examples
    --------
    >>> import numpy as np
    >>> import activerm_fast as arm
    >>> x = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    >>> pool = np.array([[i, j] for i in range(6) for j in range(i + 1, 6)])
    >>> model = arm.RewardModel(8, hidden=(4,), ensemble=2)
    >>> batch = arm.select_with_model("ensemble-dopt-greedy", model, x, pool, 3)
    >>> hidden, rewards = model.features_and_rewards(x)
    >>> same = arm.select(
    ...     "ensemble-dopt-greedy", features=hidden, pairs=pool, k=3, rewards=rewards
    ... )
    >>> batch.indices.tolist() == same.indices.tolist(), len(batch.indices)
    (True, 3)
    >>> on_x = arm.select_with_model("dopt-greedy", model, x, pool, 3, features="embedding")
    >>> on_x.indices.tolist() == arm.select(
    ...     "dopt-greedy", features=x, pairs=pool, k=3, rewards=rewards
    ... ).indices.tolist()
    True
    """
    choice = v.known_name(features, FEATURE_CHOICES, "features")
    hidden, rewards = model.features_and_rewards(embeddings)
    return select(
        strategy,
        features=hidden if choice == "hidden" else embeddings,
        pairs=pairs,
        k=k,
        rewards=rewards,
        **options,
    )
