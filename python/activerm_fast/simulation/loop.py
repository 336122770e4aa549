"""Simulated active labelling: rounds of select -> ask the oracle -> refit -> evaluate.

One :class:`ActiveLoop` runs one strategy with one seed. Every finished round is checkpointed
(labelled pairs, labels, records, model) so a killed run restarted with the same arguments
continues from the last finished round, with no label lost or asked twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import _launch
from .._threads import free_core_threads
from .._validation import (
    available_count,
    describe,
    first_line,
    known_name,
    labelled_pairs,
    positive_integer,
    positive_or_infinite,
    positive_scalar,
    seed_argument,
)
from ..data.dataset import Dataset
from ..data.json_files import json_document
from ..data.npz_files import read_npz
from ..data.pairs import POOLS, candidate_pool, cross_pair_count
from ..model import metrics
from ..model.precision import resolve_precision
from ..model.reward_model import RewardModel
from ..selection.api import (
    FEATURE_CHOICES,
    RIDGE_MODES,
    STRATEGIES,
    UNCERTAINTY,
    prompt_features_for,
    select,
    select_with_model,
)
from .oracle import BTOracle, PairLabelOracle


@dataclass(frozen=True)
class LoopConfig:
    """Everything that defines a simulated labelling campaign except the strategy and seed.

    Each round draws ``prompts_per_round`` training prompts, builds the candidate pool from
    their responses (``cross``: ``cross_pairs`` sampled pairs of responses to different
    prompts; ``within``: every pair inside a prompt) and labels ``per_round`` of them. The
    first round is random for every strategy (there is no model yet), so all strategies of
    one seed start from the same labels. The design uses ``features`` (``hidden``: the reward
    model's last hidden layer; ``embedding``: the embeddings) and the ridge lambda of F0
    (``ridge_mode`` ``absolute``: lambda = ``ridge``; ``relative``: lambda = ``ridge``
    tr(F_L)/d, F_L the labelled pairs' Fisher information; see
    :func:`~activerm_fast.select`).

    Parameters
    ----------
    pool : {"cross", "within"}, default "cross"
        How each round's candidate pool is built.
    rounds : int, default 8
        Rounds to run.
    per_round : int, default 100
        Pairs labelled per round.
    prompts_per_round : int, default 120
        Training prompts drawn per round.
    cross_pairs : int, default 50_000
        Candidate pairs sampled per round for ``pool="cross"``.
    ensemble : int, default 3
        Members of the reward model refitted each round.
    hidden : tuple of int, default (256, 256)
        Its hidden widths.
    epochs, batch_size, lr, weight_decay, patience, warm_start
        The fit's settings (see :meth:`~activerm_fast.RewardModel.fit`).
    precision : {"float32", "bfloat16", "auto"}, default "float32"
        What the fit multiplies in; "auto" becomes bfloat16 where this CPU multiplies it
        natively, else float32 (the config, and so a checkpoint, holds the outcome: a run
        resumed on a machine that resolves it otherwise says its settings differ).
    beta : float, default 1.0
        Label noise of the Bradley-Terry oracle (``inf``: noiseless).
    ridge : float, default 1e-3
        lambda, or c with ``ridge_mode="relative"``.
    ridge_mode : {"absolute", "relative"}, default "absolute"
        How ``ridge`` sets lambda.
    features : {"hidden", "embedding"}, default "hidden"
        What the design sees.
    best_of : tuple of int, default (2, 4, 8, 16)
        The N of the best-of-N metrics.
    per_prompt : int, optional
        At most this many pairs per prompt in a round's batch, for every strategy and the
        first random round (None: no limit; see :func:`~activerm_fast.select`).
    uncertainty : {"ensemble", "laplace"}, default "ensemble"
        Where ``bald``, ``bal-pm`` and the per-prompt rules take the model's uncertainty from:
        the ensemble's spread, or the Laplace posterior of its last layer (see
        :func:`~activerm_fast.select`).

    Raises
    ------
    TypeError
        If a count is not an integer or a number is not a number.
    ValueError
        If a name is unknown or a count, ``beta`` or ``ridge`` is not positive.

    Examples
    --------
    >>> from activerm_fast import LoopConfig
    >>> config = LoopConfig(rounds=2, per_round=4, hidden=[8])
    >>> config.rounds * config.per_round, config.hidden  # the budget; lists become tuples
    (8, (8,))
    >>> LoopConfig(pool="everything")
    Traceback (most recent call last):
    ...
    ValueError: pool must be one of ('cross', 'within'), got 'everything'
    >>> LoopConfig(uncertainty="dropout")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown uncertainty 'dropout'; choose one of ...
    """

    pool: str = "cross"
    rounds: int = 8
    per_round: int = 100
    prompts_per_round: int = 120
    cross_pairs: int = 50_000
    ensemble: int = 3
    hidden: tuple[int, ...] = (256, 256)
    epochs: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 3
    warm_start: bool = False
    precision: str = "float32"
    beta: float = 1.0
    ridge: float = 1e-3
    ridge_mode: str = "absolute"
    features: str = "hidden"
    best_of: tuple[int, ...] = (2, 4, 8, 16)
    per_prompt: int | None = None
    uncertainty: str = "ensemble"

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")
        for name in ("rounds", "per_round", "prompts_per_round", "cross_pairs", "ensemble"):
            positive_integer(getattr(self, name), name)
        if self.pool == "cross" and self.per_round > self.cross_pairs:
            # a round's pool could never hold a round's labels
            raise ValueError(
                f"per_round={self.per_round} is more than cross_pairs={self.cross_pairs}, "
                "the candidate pool a round chooses from"
            )
        positive_or_infinite(self.beta, "beta")
        positive_scalar(self.ridge, "ridge")
        known_name(self.ridge_mode, RIDGE_MODES, "ridge_mode")
        known_name(self.features, FEATURE_CHOICES, "features")
        known_name(self.uncertainty, UNCERTAINTY, "uncertainty")
        object.__setattr__(self, "precision", resolve_precision(self.precision, "cpu"))
        if self.per_prompt is not None:
            positive_integer(self.per_prompt, "per_prompt")
        object.__setattr__(self, "hidden", tuple(self.hidden))
        object.__setattr__(self, "best_of", tuple(self.best_of))


@dataclass
class LoopState:
    """What a checkpoint holds: the labels so far and one record per finished round."""

    pairs: np.ndarray = field(default_factory=lambda: np.empty((0, 2), np.int64))
    labels: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    records: list[dict[str, Any]] = field(default_factory=list)


def data_digest(*parts: Dataset) -> str:
    """The sha256 hex digest of the numbers of ``parts``: each one's embeddings, prompt ids,
    golden reward and labelled pairs, with their dtypes and shapes.

    Examples
    --------
    >>> import activerm_fast as arm
    >>> data = arm.synthetic(4, 3, 2, 5, dim=8)
    >>> data_digest(data.train(), data.test()) == data_digest(data.train(), data.test())
    True
    >>> data_digest(data.train()) == data_digest(data.with_split(0.5, seed=1).train())
    False
    """
    digest = hashlib.sha256()
    for part in parts:
        for array in (part.embeddings, part.prompt_ids, part.gold, part.pairs, part.labels):
            if array is None:
                digest.update(b"none;")
                continue
            digest.update(f"{array.dtype.str}{array.shape};".encode())
            digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _campaign(identity: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's identity less its number of rounds: a round depends on the seed and its
    own index only, so a run of more rounds continues a shorter one exactly."""
    return {**identity, "config": {k: v for k, v in identity["config"].items() if k != "rounds"}}


class ActiveLoop:
    """Run ``strategy`` on ``dataset`` for ``config.rounds`` rounds with one ``seed``.

    Labels come from a Bradley-Terry oracle on the dataset's golden reward, or, for
    human-labelled data without one, from its stored labels (the pool is then the labelled
    training pairs of the drawn prompts). With ``checkpoint_dir`` every finished round is
    saved there and :meth:`run` resumes from it; a config that differs only in more
    ``rounds`` continues the saved campaign, exactly as an uninterrupted run of that many.

    Parameters
    ----------
    dataset : Dataset
        The data, with a train/test split; the test prompts need a golden reward or
        labelled pairs to evaluate on.
    strategy : str
        A name in :data:`~activerm_fast.STRATEGIES`.
    config : LoopConfig, optional
        The campaign; ``LoopConfig()`` when None.
    seed : int, default 0
        Seeds the prompts drawn, the selection, the fits and the default oracle.
    checkpoint_dir : str or os.PathLike, optional
        Folder of the checkpoints.
    oracle : object, optional
        Anything with ``label(pairs)`` over training rows; by default a
        :class:`~activerm_fast.BTOracle` on the training gold (or a
        :class:`~activerm_fast.PairLabelOracle` on the stored labels).

    Raises
    ------
    ValueError
        If the strategy is unknown, the dataset lacks training or test prompts, its test rows
        have nothing to evaluate on, or a round's candidate pool would hold fewer than
        ``config.per_round`` pairs.

    Examples
    --------
    >>> import activerm_fast as arm
    >>> data = arm.synthetic(6, 4, 3, 4, dim=8)  # 6 training prompts of 4 responses
    >>> config = arm.LoopConfig(
    ...     rounds=2, per_round=4, prompts_per_round=4, cross_pairs=50, ensemble=2,
    ...     hidden=(8,), epochs=5,
    ... )
    >>> records = arm.ActiveLoop(data, "dopt-greedy", config, seed=0).run()
    >>> [(r["round"], r["labels"], r["pool_size"]) for r in records]
    [(1, 4, 50), (2, 8, 50)]
    >>> -1 <= records[-1]["spearman"] <= 1
    True
    >>> arm.ActiveLoop(data, "random", arm.LoopConfig(per_round=40, pool="within"))
    Traceback (most recent call last):
    ...
    ValueError: round 1: the candidate pool holds 36 pairs (6 prompts of 4 responses), fewer ...
    """

    def __init__(
        self,
        dataset: Dataset,
        strategy: str,
        config: LoopConfig | None = None,
        *,
        seed: int = 0,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        oracle: Any | None = None,
    ) -> None:
        self.strategy = known_name(strategy, STRATEGIES, "strategy")
        self.config = config or LoopConfig()
        self.seed = seed_argument(seed)
        self.train = dataset.train()
        self.test = dataset.test()
        if self.train.num_prompts == 0 or self.test.num_prompts == 0:
            raise ValueError(
                f"dataset {dataset.name!r} needs training and test prompts, got "
                f"{self.train.num_prompts} and {self.test.num_prompts}"
            )
        if self.test.gold is None and (self.test.pairs is None or len(self.test.pairs) == 0):
            raise ValueError(
                f"dataset {dataset.name!r} has neither a golden reward nor labelled test pairs: "
                "nothing to evaluate on"
            )
        try:  # what every round's evaluation would refuse after its fit, refused now
            self._metrics(np.zeros(self.test.n) if self.test.gold is None else self.test.gold)
        except ValueError as err:
            raise ValueError(
                f"dataset {dataset.name!r}: its test split ({self.test.num_prompts} prompts, "
                f"{self.test.n} responses) cannot be evaluated: {err}"
            ) from None
        self.oracle = oracle or _default_oracle(self.train, self.config.beta, self.seed)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.model: RewardModel | None = None
        self._check_pools(self.seed)  # what a round would refuse hours in, refused now
        # each training response's prompt feature, for strategies that spread over prompts
        self.prompt_features = prompt_features_for(self.strategy, self.train)

    # ---- checks before the first round ---------------------------------------------------

    def _check_strategy(self, strategy: str) -> None:
        """A ValueError for a strategy that would fail in its first model-based round (the
        second: the first is random for every strategy), naming the setting to change."""
        if strategy == "random":  # its rounds never read the model
            return
        config, entry = self.config, STRATEGIES[strategy]
        if config.ensemble > _launch.MAX_MEMBERS:
            raise ValueError(
                f"strategy {strategy!r} takes the rewards of at most {_launch.MAX_MEMBERS} "
                f"ensemble members, got ensemble={config.ensemble}; lower ensemble (--ensemble)"
            )
        if entry.needs_ensemble and config.uncertainty == "ensemble" and config.ensemble < 2:
            raise ValueError(
                f"strategy {strategy!r} needs rewards of an ensemble of at least 2 members, got "
                f"{config.ensemble} (ensemble={config.ensemble}); raise ensemble or use "
                "uncertainty='laplace' (--ensemble, --uncertainty laplace)"
            )
        if entry.uses_prompt_ids:
            if isinstance(self.oracle, PairLabelOracle):
                known, prompt_of = self.oracle.pairs, self.train.prompt_ids
                if not np.any(prompt_of[known[:, 0]] == prompt_of[known[:, 1]]):
                    raise ValueError(
                        f"strategy {strategy!r} chooses pairs within a prompt, but no labelled "
                        f"training pair of dataset {self.train.name!r} is within one"
                    )
            elif config.pool != "within":
                raise ValueError(
                    f"strategy {strategy!r} chooses pairs within a prompt, but pool="
                    f"{config.pool!r} pools hold none; use pool='within' (--pool within)"
                )

    def _check_pools(self, seed: int) -> None:
        """A ValueError naming the first round (of a run with ``seed``) whose candidate pool
        holds fewer than ``per_round`` pairs: its size follows from the prompts it draws."""
        config = self.config
        sizes = np.bincount(self.train.prompt_ids)
        for round_index in range(config.rounds):
            prompts, rows = self._round_rows(np.random.default_rng([seed, round_index]))
            held = self._pool_size(rows)
            if held >= config.per_round:
                continue
            if held == 0:
                drawn = f"{len(prompts)} prompts a round"
                if len(prompts) < config.prompts_per_round:  # the training split has no more
                    drawn = (
                        f"{drawn}: all {self.train.num_prompts} training prompts, fewer than "
                        f"prompts_per_round={config.prompts_per_round}"
                    )
                raise ValueError(
                    f"round {round_index + 1}: the candidate pool is empty (pool={config.pool!r}, "
                    f"{drawn}): cross-prompt pairs need 2 prompts or more, within-prompt pairs "
                    "prompts of 2 responses or more"
                )
            low, high = int(sizes[prompts].min()), int(sizes[prompts].max())
            responses = f"{low}" if low == high else f"{low} to {high}"
            raise ValueError(
                f"round {round_index + 1}: the candidate pool holds {held} pairs "
                f"({len(prompts)} prompts of {responses} responses), fewer than "
                f"per_round={config.per_round}; raise prompts_per_round or lower per_round"
            )

    def _pool_size(self, rows: np.ndarray) -> int:
        """How many pairs :meth:`_candidate_pool` builds among the training ``rows``."""
        if isinstance(self.oracle, PairLabelOracle):
            return int(np.isin(self.oracle.pairs, rows).all(axis=1).sum())
        prompt_ids = self.train.prompt_ids[rows]
        if self.config.pool == "within":
            sizes = np.bincount(prompt_ids).astype(np.int64)
            return int((sizes * (sizes - 1) // 2).sum())
        return min(self.config.cross_pairs, cross_pair_count(prompt_ids))

    # ---- the rounds ----------------------------------------------------------------------

    def run(self, on_round: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Run (or finish) every round.

        Parameters
        ----------
        on_round : callable, optional
            Called with each record as its round finishes (not for rounds resumed from a
            checkpoint).

        Returns
        -------
        list of dict
            One record per round: strategy, seed, pool, uncertainty, precision, round
            (1-based), labels so far, pool_size, the test metrics (``spearman``,
            ``best_of_{N}_gold`` and ``best_of_{N}_quantile`` with a golden reward,
            ``pair_accuracy`` with labelled test pairs), select_seconds and fit_seconds.

        Raises
        ------
        ValueError
            If ``checkpoint_dir`` holds a run with other settings, more rounds than
            ``config.rounds`` or files that are not a checkpoint; before the first round, if
            the strategy cannot run on this campaign's model or pools (more ensemble members
            than it takes the rewards of, one member where it needs an ensemble's spread,
            cross-prompt pools for a rule that chooses within a prompt); or if the oracle
            refuses a pair.

        Examples
        --------
        >>> import os, tempfile
        >>> import activerm_fast as arm
        >>> data = arm.synthetic(5, 4, 2, 4, dim=6, seed=1)
        >>> config = arm.LoopConfig(rounds=2, per_round=3, ensemble=1, hidden=(4,), epochs=3)
        >>> folder = tempfile.mkdtemp()
        >>> seen = []
        >>> first = arm.ActiveLoop(data, "xtx", config, checkpoint_dir=folder).run(seen.append)
        >>> len(seen), "state.json" in os.listdir(folder)
        (2, True)
        >>> again = arm.ActiveLoop(data, "xtx", config, checkpoint_dir=folder).run(seen.append)
        >>> len(seen), again == first  # resumed from the checkpoint: nothing re-run
        (2, True)
        """
        state = self._resume()  # a checkpoint of other settings is named first
        self._check_strategy(self.strategy)
        for round_index in range(len(state.records), self.config.rounds):
            # thousands of small torch operations: threads only for the cores free now
            with free_core_threads():
                record = self._round(round_index, state)
            state.records.append(record)
            self._save(state)
            if on_round is not None:
                on_round(record)
        return state.records

    def _round(self, round_index: int, state: LoopState) -> dict[str, Any]:
        config = self.config
        rng = np.random.default_rng([self.seed, round_index])
        pool = self._candidate_pool(rng)  # of per_round pairs or more (_check_pools)
        select_seed, fit_seed = (int(x) for x in rng.integers(1 << 31, size=2))
        pending = self._pending(round_index)
        if pending is not None:  # asked before a kill, not yet committed: never ask again
            asked, answers, select_seconds = pending
        else:
            start = time.perf_counter()
            asked = pool[self._choose(pool, state, select_seed)]
            select_seconds = time.perf_counter() - start
            answers = self.oracle.label(asked)
            self._save_pending(round_index, asked, answers, select_seconds)
        state.pairs = np.concatenate([state.pairs, asked])
        state.labels = np.concatenate([state.labels, answers])

        start = time.perf_counter()
        self._fit(state, seed=fit_seed)
        fit_seconds = time.perf_counter() - start
        return {
            "strategy": self.strategy,
            "seed": self.seed,
            "pool": config.pool,
            "uncertainty": config.uncertainty,
            "precision": config.precision,
            "round": round_index + 1,
            "labels": int(len(state.labels)),
            "pool_size": int(len(pool)),
            **self._evaluate(),
            "select_seconds": select_seconds,
            "fit_seconds": fit_seconds,
        }

    def _choose(self, pool: np.ndarray, state: LoopState, seed: int) -> np.ndarray:
        """Positions in ``pool`` of this round's pairs (random while there is no model)."""
        k = self.config.per_round
        # the pool holds k pairs (_check_pools), but the labels of earlier rounds may leave
        # fewer unlabelled in it (a within-prompt pool of prompts drawn again): those are taken
        if len(pool) - len(state.pairs) < k:  # otherwise k unlabelled pairs are certain
            k = min(k, self._available(pool, state))
        if self.model is None or self.strategy == "random":
            # the draw reads no features, the model's or the embeddings': one zero column
            # spares select the log-det bookkeeping of a design nobody reads here
            selection = select(
                "random",
                features=np.zeros((self.train.n, 1), np.float32),
                pairs=pool,
                k=k,
                labelled=state.pairs,
                seed=seed,
                **self._quota(),
            )
        else:
            selection = select_with_model(
                self.strategy,
                self.model,
                self.train.embeddings,
                pool,
                k,
                labelled=state.pairs,
                ridge=self.config.ridge,
                ridge_mode=self.config.ridge_mode,
                features=self.config.features,
                seed=seed,
                prompt_features=self.prompt_features,
                uncertainty=self.config.uncertainty,
                **self._quota(),
            )
        return np.asarray(selection.indices)

    def _quota(self) -> dict[str, Any]:
        """The prompt of each response and the per-prompt quota, as options of
        :func:`~activerm_fast.select`."""
        return {"per_prompt": self.config.per_prompt, "prompt_ids": self.train.prompt_ids}

    def _round_rows(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The training prompts a round draws (the first draw of its generator) and the rows
        of their responses."""
        train = self.train
        prompts = rng.choice(
            train.num_prompts,
            size=min(self.config.prompts_per_round, train.num_prompts),
            replace=False,
        )
        return prompts, np.flatnonzero(np.isin(train.prompt_ids, prompts))

    def _candidate_pool(self, rng: np.random.Generator) -> np.ndarray:
        """(P, 2) training-row pairs among the responses of this round's prompts."""
        train, config = self.train, self.config
        _, rows = self._round_rows(rng)
        if isinstance(self.oracle, PairLabelOracle):
            known = self.oracle.pairs
            return known[np.isin(known, rows).all(axis=1)]
        seed = int(rng.integers(1 << 31))
        positions = candidate_pool(train.prompt_ids[rows], config.pool, config.cross_pairs, seed)
        return np.asarray(rows[positions])

    def _available(self, pool: np.ndarray, state: LoopState) -> int:
        """Pairs of the pool not labelled yet."""
        return available_count(torch.from_numpy(pool), torch.from_numpy(state.pairs), self.train.n)

    def _fit(self, state: LoopState, seed: int) -> None:
        config = self.config
        model = self.model if config.warm_start else None
        warm = model is not None
        if model is None:
            model = self.model = RewardModel(
                self.train.dim, hidden=config.hidden, ensemble=config.ensemble, seed=seed
            )
        model.fit(
            self.train.embeddings,
            state.pairs,
            state.labels,
            epochs=config.epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            weight_decay=config.weight_decay,
            patience=config.patience,
            seed=seed,
            warm_start=warm,
            precision=config.precision,
        )

    def _evaluate(self) -> dict[str, float]:
        assert self.model is not None, "each round fits a model before evaluating it"
        return self._metrics(np.asarray(self.model.rewards(self.test.embeddings)).mean(axis=0))

    def _metrics(self, pred: np.ndarray) -> dict[str, float]:
        """The test split's metrics of the (n_test,) rewards ``pred``."""
        test = self.test
        result: dict[str, float] = {}
        if test.gold is not None:
            result["spearman"] = metrics.within_prompt_spearman(pred, test.gold, test.prompt_ids)
            best = metrics.best_of_n(pred, test.gold, test.prompt_ids, ns=self.config.best_of)
            for n, outcome in best.items():
                result[f"best_of_{n}_gold"] = outcome.mean_gold
                result[f"best_of_{n}_quantile"] = outcome.mean_quantile
        if test.pairs is not None and len(test.pairs):
            result["pair_accuracy"] = metrics.pair_accuracy(pred, test.pairs, test.labels)
        return result

    # ---- checkpoints ---------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "seed": self.seed,
            "config": asdict(self.config),
            "train_rows": self.train.n,
            "data": self._data_digest,
        }

    @cached_property
    def _data_digest(self) -> str:
        """The sha256 of what the rounds read of the dataset (both sides of the split), so a
        checkpoint continues only on the data it was written on."""
        return data_digest(self.train, self.test)

    def _resume(self) -> LoopState:
        self.model = None
        if self.checkpoint_dir is None or not (self.checkpoint_dir / "state.json").exists():
            return LoopState()
        saved = _manifest(self.checkpoint_dir / "state.json")
        identity = json.loads(json.dumps(self._identity()))
        if saved["identity"].get("data") != identity["data"]:
            raise ValueError(
                f"{self.checkpoint_dir} holds a run on other data (another dataset, split or "
                "embeddings, or a checkpoint without their digest); use another output folder "
                "or delete it"
            )
        if _campaign(saved["identity"]) != _campaign(identity):
            raise ValueError(
                f"{self.checkpoint_dir} holds a run with other settings; use another output "
                "folder or delete it"
            )
        if len(saved["records"]) > self.config.rounds:
            raise ValueError(
                f"{self.checkpoint_dir} holds {len(saved['records'])} rounds, more than "
                f"rounds={self.config.rounds}; ask for at least that many or use another "
                "output folder"
            )
        labels_path = self.checkpoint_dir / saved["labels_file"]
        arrays = _checkpoint_arrays(labels_path, ("pairs", "labels"))
        try:
            pairs, labels = labelled_pairs(arrays["pairs"], arrays["labels"], self.train.n)
        except (TypeError, ValueError) as err:
            raise _not_a_checkpoint(labels_path, first_line(err)) from None
        assert pairs is not None and labels is not None, "both read from the archive"
        state = LoopState(pairs, labels, saved["records"])
        if state.records:
            model_path = self.checkpoint_dir / saved["model_file"]
            if not model_path.is_file():
                raise _not_a_checkpoint(model_path, "the file is missing")
            self.model = RewardModel.load(model_path)
        return state

    def _pending(self, round_index: int) -> tuple[np.ndarray, np.ndarray, float] | None:
        path = None if self.checkpoint_dir is None else self.checkpoint_dir / "pending.npz"
        if path is None or not path.exists():
            return None
        pending = _checkpoint_arrays(path, ("round", "pairs", "labels", "select_seconds"))
        if int(pending["round"]) != round_index:
            return None
        return pending["pairs"], pending["labels"], float(pending["select_seconds"])

    def _save_pending(
        self, round_index: int, pairs: np.ndarray, labels: np.ndarray, seconds: float
    ) -> None:
        """Keep the answers of a round the moment they arrive: a kill before the round is
        committed must not lose them or make the next run ask for them again."""
        if self.checkpoint_dir is None:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.checkpoint_dir / "pending.tmp.npz"
        np.savez(temporary, round=round_index, pairs=pairs, labels=labels, select_seconds=seconds)
        os.replace(temporary, self.checkpoint_dir / "pending.npz")

    def _save(self, state: LoopState) -> None:
        """Write the round's files under new names, then swap state.json in one rename: a
        kill at any moment leaves the previous round's checkpoint intact."""
        if self.checkpoint_dir is None:
            return
        folder = self.checkpoint_dir
        folder.mkdir(parents=True, exist_ok=True)
        round_index = len(state.records)
        labels_file, model_file = f"labels-{round_index}.npz", f"model-{round_index}.pt"
        np.savez(folder / labels_file, pairs=state.pairs, labels=state.labels)
        assert self.model is not None, "each round fits a model before it is saved"
        self.model.save(folder / model_file)
        manifest = {
            "identity": self._identity(),
            "labels_file": labels_file,
            "model_file": model_file,
            "records": state.records,
        }
        temporary = folder / "state.json.tmp"
        temporary.write_text(json.dumps(manifest, indent=1, default=_json_number))
        os.replace(temporary, folder / "state.json")
        for old in (f"labels-{round_index - 1}.npz", f"model-{round_index - 1}.pt", "pending.npz"):
            (folder / old).unlink(missing_ok=True)


def _check_runs(
    dataset: Dataset, strategies: Sequence[str], config: LoopConfig, seeds: Sequence[int]
) -> None:
    """Every check an :class:`ActiveLoop` makes before its first round, for every strategy
    and seed of a comparison, before its first run: the dataset's once, then every strategy
    and the round pools of every seed on its training rows."""
    loop = ActiveLoop(dataset, strategies[0], config, seed=seeds[0])
    for strategy in strategies:
        loop._check_strategy(strategy)
    for seed in seeds[1:]:
        loop._check_pools(seed)


def _not_a_checkpoint(path: Path, reason: str) -> ValueError:
    """The error for a damaged or foreign file in a checkpoint folder."""
    return ValueError(
        f"{path} is not a checkpoint of this tool ({reason}); delete the folder {path.parent} "
        "or use another output folder"
    )


def _manifest(path: Path) -> dict[str, Any]:
    """A checkpoint's state.json, every field :meth:`ActiveLoop._resume` reads checked."""
    try:
        saved = json_document(path, "checkpoint")
    except ValueError as err:
        raise _not_a_checkpoint(path, first_line(err).removeprefix(f"{path}: ")) from None
    if not isinstance(saved, dict):
        raise _not_a_checkpoint(path, f"it holds a JSON {describe(saved)}, not an object")
    identity, records = saved.get("identity"), saved.get("records")
    if not isinstance(identity, dict) or not isinstance(identity.get("config"), dict):
        raise _not_a_checkpoint(path, "no 'identity' object with a 'config' object")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise _not_a_checkpoint(path, "no 'records' list of objects")
    for key in ("labels_file", "model_file"):
        name = saved.get(key)
        # a name of a file inside the folder, never a path leading out of it
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
            raise _not_a_checkpoint(path, f"no {key!r} naming a file of the folder")
    return saved


def _checkpoint_arrays(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of a checkpoint's .npz file."""
    if not path.is_file():
        raise _not_a_checkpoint(path, "the file is missing")
    try:
        arrays = read_npz(path)
    except ValueError as err:
        raise _not_a_checkpoint(path, first_line(err).removeprefix(f"{path}: ")) from None
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise _not_a_checkpoint(path, f"it holds no {', '.join(missing)}")
    return arrays


def _default_oracle(train: Dataset, beta: float, seed: int) -> BTOracle | PairLabelOracle:
    if train.gold is not None:
        return BTOracle(train.gold, beta=beta, seed=seed)
    if train.pairs is None or len(train.pairs) == 0:
        raise ValueError(f"dataset {train.name!r} has neither a golden reward nor labelled pairs")
    try:
        return PairLabelOracle(train.pairs, train.labels)
    except ValueError as err:  # name the dataset: the indices are its training split's rows
        raise ValueError(
            f"dataset {train.name!r} cannot answer as an annotator, its training split's {err}"
        ) from None


def _json_number(value: Any) -> float:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
