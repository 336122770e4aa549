"""An ensemble of MLP reward heads on fixed embeddings, trained with the Bradley–Terry loss.

Each member maps an embedding x through hidden layers with GELU to features phi(x) in R^d and
a bias-free linear output r(x) = theta^T phi(x), so the selection kernels can work on
``features`` and ``theta`` directly. The E members' weights are stacked into (E, ...) tensors
and trained together: one batched matrix product per layer, never a Python loop over models.
"""

from __future__ import annotations

import math
import os
import pickle
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np
import torch
import torch.nn.functional as F

from .._launch import device_memory
from .._threads import free_core_threads
from .._validation import (
    device_argument,
    embeddings_tensor,
    first_line,
    integer_sequence,
    labelled_pairs,
    positive_integer,
    positive_scalar,
    real_number,
    seed_argument,
)
from .precision import resolve_precision

_FORMAT = "activerm_fast.RewardModel"
_FORMAT_VERSION = 1
_INFERENCE_ROWS = 4096  # rows per forward chunk in rewards()/features(), to bound memory
# what torch.load raises for a zip archive that is not a readable torch.save one (a damaged
# pickle inside raises whatever the unpickler meets first)
_UNREADABLE = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    ValueError,
    zipfile.BadZipFile,
    IndexError,
    KeyError,
    AttributeError,
)


def _archive_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is no whole zip archive (None when it is one, every member's CRC right)."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (
        OSError,
        EOFError,
        ValueError,
        NotImplementedError,
        zipfile.BadZipFile,
        zlib.error,
    ) as err:
        # NotImplementedError: a flag bit read as encryption or an unknown compression
        return f"not a torch.save archive: {first_line(err)}"
    return None if damaged is None else f"a damaged archive: the CRC of {damaged} does not match"


@dataclass
class FitHistory:
    """What :meth:`RewardModel.fit` did.

    Attributes
    ----------
    train_loss : list of float
        Per epoch, the BT loss on the training batches averaged over the members still
        training.
    val_loss : list of list of float
        Per epoch, each member's BT loss on the held-out pairs (empty without them); a
        member that has stopped is its best weights, and repeats its best loss.
    best_epoch : list of int
        Per member, the epoch whose weights were kept (early stopping), 0-based.
    num_train_pairs, num_val_pairs : int
        How the labelled pairs were split.
    precision : str
        What the training steps multiplied in, "float32" or "bfloat16".

    Examples
    --------
    >>> import itertools
    >>> import numpy as np
    >>> from activerm_fast import RewardModel
    >>> x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(6, 4)
    >>> pairs = np.array(list(itertools.combinations(range(6), 2)))  # all 15 pairs of 6 rows
    >>> labels = np.ones(15, int)  # the lower row always wins
    >>> history = RewardModel(4, hidden=(4,)).fit(x, pairs, labels, lr=0.01).history_
    >>> history.num_train_pairs, history.num_val_pairs, len(history.best_epoch)  # one member
    (13, 2, 1)
    >>> history.train_loss[-1] < history.train_loss[0], len(history.val_loss[0])
    (True, 1)
    >>> 0 <= history.best_epoch[0] < len(history.train_loss) <= 30  # epochs=30 at most
    True
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[list[float]] = field(default_factory=list)
    best_epoch: list[int] = field(default_factory=list)
    num_train_pairs: int = 0
    num_val_pairs: int = 0
    precision: str = "float32"


def _adamw(params: list[torch.Tensor], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with its fused kernel where this torch has one for the parameters' device (one
    pass over each parameter per step instead of a dozen operations), else the foreach one."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device here
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)


@dataclass(frozen=True)
class _HeldOut:
    """The held-out pairs of a fit, their distinct responses gathered once."""

    x: torch.Tensor  # (u, D) the distinct responses of the held-out pairs
    pairs: torch.Tensor  # (V, 2) positions in x
    y: torch.Tensor  # (V,) float labels

    @classmethod
    def of(cls, x: torch.Tensor, pairs: torch.Tensor, y: torch.Tensor) -> _HeldOut | None:
        """The held-out set of ``pairs`` (rows of x) and labels ``y``; None without pairs."""
        if pairs.shape[0] == 0:
            return None
        rows, inverse = torch.unique(pairs, return_inverse=True)
        return cls(x[rows], inverse, y)

    def loss(self, model: RewardModel, params: Sequence[torch.Tensor]) -> torch.Tensor:
        """(E,) BT loss of each member of ``params`` (a subset of ``model``'s) on these pairs."""
        with torch.no_grad():
            r = torch.bmm(model._forward(self.x, params), params[-1][:, :, None]).squeeze(-1)
            margin = r[:, self.pairs[:, 0]] - r[:, self.pairs[:, 1]]
            loss = F.binary_cross_entropy_with_logits(
                margin, self.y.expand_as(margin), reduction="none"
            )
            return loss.mean(dim=1)


def _distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each member's distinct entries of (E, k) ``rows``, and where each entry is among them.

    Returns (E, m) ``distinct`` (m: the most any member has; a member with fewer repeats its
    last one) and (E, k) ``at`` with ``distinct[e, at[e, j]] == rows[e, j]``.

    >>> distinct, at = _distinct_rows(np.array([[5, 2, 5, 2], [1, 4, 3, 4]]))
    >>> distinct.tolist(), at.tolist()
    ([[2, 5, 5], [1, 3, 4]], [[1, 0, 1, 0], [0, 2, 1, 2]])
    """
    by_value = np.argsort(rows, axis=1, kind="stable")
    ordered = np.take_along_axis(rows, by_value, axis=1)
    new = np.ones(rows.shape, dtype=bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    slot = np.cumsum(new, axis=1) - 1  # each sorted entry's place among the distinct ones
    distinct = np.repeat(ordered[:, -1:], int(slot[:, -1].max()) + 1, axis=1)
    np.put_along_axis(distinct, slot, ordered, axis=1)
    at = np.empty_like(slot)
    np.put_along_axis(at, by_value, slot, axis=1)
    return distinct, at


class _Batches:
    """One epoch's mini-batches of every member still training, each member's distinct
    responses of a batch forwarded once (a response may be in several of its pairs).

    The distinct responses are found on the host, where the order is drawn, and reach the
    device in one copy an epoch: no step waits for a transfer.
    """

    def __init__(
        self, pairs: np.ndarray, order: np.ndarray, batch_size: int, device: torch.device
    ) -> None:
        distinct: list[np.ndarray] = []
        at: list[np.ndarray] = []
        self._spans: list[tuple[int, int, int, int]] = []  # rows, then pairs, of each batch
        rows_done = 0
        for start in range(0, order.shape[1], batch_size):
            batch = order[:, start : start + batch_size]
            rows, sides = _distinct_rows(np.concatenate([pairs[batch, 0], pairs[batch, 1]], 1))
            distinct.append(rows)
            at.append(sides)
            self._spans.append((rows_done, rows_done + rows.shape[1], start, start + batch_size))
            rows_done += rows.shape[1]
        self._rows = torch.from_numpy(np.concatenate(distinct, axis=1)).to(device)
        self._at = torch.from_numpy(np.concatenate(at, axis=1)).to(device)
        self._order = torch.from_numpy(order).to(device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per batch: (E, m) distinct responses, (E, 2b) where the first then the second
        response of each pair is among them, (E, b) the pairs."""
        for rows_start, rows_end, start, end in self._spans:
            batch = self._order[:, start:end]
            sides = self._at[:, 2 * start : 2 * start + 2 * batch.shape[1]]
            yield self._rows[:, rows_start:rows_end], sides, batch


def _diverged(
    params: list[torch.Tensor],
    before: list[torch.Tensor],
    epoch: int,
    loss: float,
    lr: float,
    weight_decay: float,
) -> NoReturn:
    """Put the weights ``before`` (the start's, or the best held-out epoch's) back into
    ``params`` and raise: weights that overflowed would make every later reward NaN or a tie,
    and the restored weights of a held-out fit would be the untrained ones, silently."""
    with torch.no_grad():
        for p, kept in zip(params, before, strict=True):
            p.requires_grad_(False)
            p.copy_(kept)
    raise ValueError(
        f"the fit diverged: the training loss is {loss} at epoch {epoch + 1} (lr={lr:g}, "
        f"weight_decay={weight_decay:g}); lower lr or weight_decay"
    )


class _Training:
    """The members of a fit that are still training: their parameters and AdamW.

    Starts with every member, on the model's own tensors. :meth:`keep` narrows it to the
    members that go on, as new tensors holding their weights and their AdamW moments and
    step counts, so a stopped member costs nothing more; the model's tensors are then left
    for the caller to fill in (a fit with held-out pairs restores every member's best).
    """

    def __init__(self, params: list[torch.Tensor], lr: float, weight_decay: float) -> None:
        for p in params:
            p.requires_grad_(True)
        self.params = params
        self.members = torch.arange(params[0].shape[0])
        self._settings = (lr, weight_decay)
        self._optimizer = _adamw(params, lr, weight_decay)

    def step(self, loss: torch.Tensor) -> None:
        """One AdamW step on ``loss``."""
        self._optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        self._optimizer.step()

    def keep(self, members: torch.Tensor) -> None:
        """Go on with ``members`` (model member indices, a subset of :attr:`members`) only."""
        at = torch.searchsorted(self.members, members).to(self.params[0].device)
        params = [p.detach()[at].clone().requires_grad_(True) for p in self.params]
        optimizer = _adamw(params, *self._settings)
        for old, new in zip(self.params, params, strict=True):
            moments = self._optimizer.state.get(old, {})
            optimizer.state[new] = {
                name: value[at].clone() if value.ndim else value.clone()
                for name, value in moments.items()
            }
        self.params, self.members, self._optimizer = params, members, optimizer


class RewardModel:
    """E reward heads ``input_dim -> hidden... (GELU) -> 1`` with a bias-free output layer.

    Parameters
    ----------
    input_dim : int
        Embedding dimension D.
    hidden : sequence of int, default (512, 512, 512)
        Hidden widths; the last one is the feature dimension d. ``()`` gives a linear BT
        model on the embeddings (features are the embeddings themselves).
    ensemble : int, default 1
        Number of members E.
    seed : int, default 0
        Seeds the initial weights (and :meth:`fit` when it gets no seed).
    device : str or torch.device, default "cpu"
        Where the weights live and training runs.

    Raises
    ------
    TypeError
        If a size or the seed is not an integer.
    ValueError
        If a size is not positive or the seed is negative.

    Examples
    --------
    >>> import activerm_fast as arm
    >>> x = arm.synthetic(2, 3, 1, 2, dim=8).embeddings  # 8 responses, 8-d
    >>> model = arm.RewardModel(8, hidden=(16, 4), ensemble=3)
    >>> model.feature_dim, model.theta.shape, model.rewards(x).shape
    (4, (3, 4), (3, 8))
    >>> arm.RewardModel(8, hidden=()).features(x).shape  # linear: features are the embeddings
    (1, 8, 8)
    """

    def __init__(
        self,
        input_dim: int,
        hidden: Sequence[int] = (512, 512, 512),
        ensemble: int = 1,
        seed: int = 0,
        *,
        device: str | torch.device = "cpu",
    ) -> None:
        self.input_dim = positive_integer(input_dim, "input_dim")
        self.hidden = tuple(
            positive_integer(width, "hidden widths") for width in integer_sequence(hidden, "hidden")
        )
        self.ensemble = positive_integer(ensemble, "ensemble")
        self.seed = seed_argument(seed)
        self.device = device_argument(device)
        self._check_memory()
        self.history_: FitHistory | None = None
        # the seed the weights are the initialisation of, while nothing can have changed
        # them (a fit, or parameters() handing them out, clears it): a fit with this seed
        # keeps them instead of drawing them again (a draw takes about as long as a
        # training step at the loop's sizes)
        self._drawn_from: int | None = None
        self._init_parameters(self.seed)

    @property
    def feature_dim(self) -> int:
        """d, the width of the last hidden layer (or D for a linear model)."""
        return self.hidden[-1] if self.hidden else self.input_dim

    @property
    def theta(self) -> np.ndarray:
        """(E, d) float32 output weights: ``rewards = features @ theta`` per member."""
        theta: np.ndarray = self._theta.detach().cpu().numpy().copy()
        return theta

    def parameters(self) -> list[torch.Tensor]:
        """The stacked trainable tensors, as an optimizer takes them.

        Returns
        -------
        list of torch.Tensor
            Per layer the (E, in, out) weights, then per layer the (E, out) biases, then
            theta (E, d).

        Examples
        --------
        >>> from activerm_fast import RewardModel
        >>> [tuple(p.shape) for p in RewardModel(8, hidden=(4,), ensemble=2).parameters()]
        [(2, 8, 4), (2, 4), (2, 4)]
        """
        self._drawn_from = None  # the caller may change them: fit must draw them afresh
        return self._parameters()

    def rewards(self, embeddings: Any) -> np.ndarray | torch.Tensor:
        """Every member's reward of each embedding.

        Computed as ``features @ theta`` with float64 accumulation, so for every member
        ``features(x)[e].astype(float64) @ theta[e].astype(float64)`` equals it to float32
        rounding.

        Parameters
        ----------
        embeddings : np.ndarray or torch.Tensor
            (n, D) embeddings, D = ``input_dim``.

        Returns
        -------
        np.ndarray or torch.Tensor
            (E, n) float32 rewards; a torch input gives a tensor on the model's device.

        Raises
        ------
        TypeError
            If ``embeddings`` is not an array of real numbers.
        ValueError
            If its shape is not (n, D) or a value is not finite or beyond float32.

        Examples
        --------
        >>> import numpy as np
        >>> from activerm_fast import RewardModel
        >>> x = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
        >>> model = RewardModel(8, hidden=(4,), ensemble=2)
        >>> rewards = model.rewards(x)
        >>> features = model.features(x).astype(np.float64)
        >>> by_hand = np.einsum("end,ed->en", features, model.theta.astype(np.float64))
        >>> rewards.shape, bool(np.allclose(rewards, by_hand, atol=1e-6))
        ((2, 6), True)
        """
        return self._per_row(embeddings, self._rewards_of)

    def features(self, embeddings: Any) -> np.ndarray | torch.Tensor:
        """Every member's last-layer features phi(x) of each embedding.

        Parameters
        ----------
        embeddings : np.ndarray or torch.Tensor
            (n, D) float32 or float64 embeddings, D = ``input_dim``, on any device.

        Returns
        -------
        np.ndarray or torch.Tensor
            (E, n, d) float32 features; a torch input gives a tensor.

        Raises
        ------
        TypeError, ValueError
            If ``embeddings`` is not what :meth:`rewards` accepts.

        Examples
        --------
        >>> import torch
        >>> from activerm_fast import RewardModel
        >>> features = RewardModel(8, hidden=(16, 4), ensemble=2).features(torch.ones(6, 8))
        >>> type(features).__name__, tuple(features.shape), features.dtype
        ('Tensor', (2, 6, 4), torch.float32)
        """
        return self._per_row(embeddings, lambda f: f)

    def features_and_rewards(
        self, embeddings: Any
    ) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]:
        """:meth:`features` and :meth:`rewards` from one forward pass: what selection needs.

        Parameters
        ----------
        embeddings : np.ndarray or torch.Tensor
            (n, D), as for :meth:`features`.

        Returns
        -------
        features : np.ndarray or torch.Tensor
            (E, n, d) float32 features.
        rewards : np.ndarray or torch.Tensor
            (E, n) float32 rewards, features . theta per member.

        Raises
        ------
        TypeError, ValueError
            As :meth:`rewards` and :meth:`features`: the same checks of ``embeddings``.

        Examples
        --------
        >>> import torch
        >>> import activerm_fast as arm
        >>> x = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
        >>> model = arm.RewardModel(8, hidden=(3,))  # one member
        >>> features, rewards = model.features_and_rewards(x)
        >>> tuple(features.shape), tuple(rewards.shape)
        ((1, 5, 3), (1, 5))
        >>> torch.equal(rewards, model.rewards(x)), torch.equal(features, model.features(x))
        (True, True)
        """
        features = self.features(embeddings)
        as_tensor = torch.as_tensor(features)
        with torch.no_grad():
            rewards = self._rewards_of(as_tensor.to(self._theta.device)).to(as_tensor.device)
        return features, rewards if isinstance(features, torch.Tensor) else rewards.numpy()

    def _rewards_of(self, features: torch.Tensor) -> torch.Tensor:
        """(E, b) float32 rewards of (E, b, d) features, accumulated in float64."""
        return torch.einsum("end,ed->en", features.double(), self._theta.double()).float()

    def fit(
        self,
        embeddings: Any,
        pairs: Any,
        labels: Any,
        *,
        epochs: int = 30,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        val_fraction: float = 0.1,
        patience: int = 5,
        seed: int | None = None,
        warm_start: bool = False,
        bootstrap: bool | None = None,
        precision: str = "float32",
    ) -> RewardModel:
        """Train every member on labelled pairs with the Bradley–Terry loss.

        The loss is the logistic loss of r_i - r_j from logits (labels: 1 when
        ``pairs[k, 0]`` won), minimised with Adam (decoupled weight decay, i.e. AdamW) on
        mini-batches. A seeded ``val_fraction`` of the pairs is held out (shared by all
        members); each member stops once it has gone ``patience`` epochs without improving
        its held-out loss and keeps the weights of its best epoch, and the fit ends when
        every member has stopped (the members still training go on alone, each in the
        order it would have had anyway). With no held-out pair (few labels or
        ``val_fraction=0``) all ``epochs`` run and the last weights are kept.

        Each member trains on its own bootstrap resample of the training pairs when
        ``bootstrap`` is True (default: when ``ensemble > 1``), otherwise on all of them, in
        its own shuffled order. ``warm_start`` continues from the current weights (with fresh
        Adam moments); otherwise they are re-initialised from ``seed`` (default: the model's
        seed), so the same call gives the same model (a model that has just drawn its
        weights from that seed, and has not handed them out since, keeps them: they are
        what drawing them again would give).

        With ``precision="bfloat16"`` the training steps multiply bfloat16 copies of the
        embeddings and the hidden layers' weights; the output layer, the loss, the gradients
        (accumulated into the float32 weights), AdamW and the held-out losses stay float32,
        and so does a linear model. That is faster where the hardware multiplies bfloat16 (a
        CPU with AVX512-BF16 or AMX, a CUDA device of compute capability 8 or more) and
        slower where it emulates it; the trained model is float32 either way, and its fit
        gives other bits than a float32 fit (``history_.precision`` says which ran).

        Parameters
        ----------
        embeddings : np.ndarray or torch.Tensor
            (n, D) embeddings of the responses.
        pairs : np.ndarray or torch.Tensor
            (P, 2) integer rows ``(i, j)`` of labelled comparisons.
        labels : array_like
            (P,) 1 where ``pairs[k, 0]`` won, 0 where ``pairs[k, 1]`` did.
        epochs : int, default 30
            Most epochs to run.
        batch_size : int, default 128
            Pairs per mini-batch and member.
        lr : float, default 1e-3
            Adam learning rate.
        weight_decay : float, default 1e-4
            Decoupled weight decay, finite and >= 0.
        val_fraction : float, default 0.1
            Fraction of the pairs held out for early stopping, in [0, 1).
        patience : int, default 5
            Epochs without improvement of any member before stopping.
        seed : int, optional
            Seeds initialisation, split, resampling and order; the model's seed when None.
        warm_start : bool, default False
            Continue from the current weights instead of re-initialising them.
        bootstrap : bool, optional
            Resample the training pairs per member; None means ``ensemble > 1``.
        precision : {"float32", "bfloat16", "auto"}, default "float32"
            What the training steps multiply in; "auto" is bfloat16 where the model's device
            multiplies it natively (:func:`~activerm_fast.model.precision.native_bfloat16`).

        Returns
        -------
        RewardModel
            ``self``, trained; :attr:`history_` (a :class:`FitHistory`) records the run.

        Raises
        ------
        TypeError
            If an argument has the wrong type.
        ValueError
            If ``pairs`` is empty, an index is out of range, a label is not 0 or 1, or an
            option is out of its range.

        Examples
        --------
        >>> import numpy as np
        >>> from activerm_fast import RewardModel
        >>> x = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
        >>> pairs = np.array([[0, 1], [2, 3], [4, 5], [0, 2], [1, 3], [2, 4], [3, 5], [0, 5]])
        >>> labels = (x[pairs[:, 0], 0] > x[pairs[:, 1], 0]).astype(int)  # higher x[:, 0] wins
        >>> model = RewardModel(8, hidden=(4,), ensemble=2).fit(x, pairs, labels, lr=0.01)
        >>> from activerm_fast.metrics import pair_accuracy
        >>> pair_accuracy(model.rewards(x).mean(axis=0), pairs, labels)
        1.0
        >>> again = RewardModel(8, hidden=(4,), ensemble=2).fit(x, pairs, labels, lr=0.01)
        >>> bool(np.array_equal(again.rewards(x), model.rewards(x)))  # seeded: reproducible
        True
        """
        x = self._embeddings(embeddings, "embeddings")
        pairs_np, labels_np = labelled_pairs(pairs, labels, x.shape[0])
        if pairs_np is None or labels_np is None or pairs_np.shape[0] == 0:
            raise ValueError("pairs is empty: fit needs at least one labelled pair")
        checked_pairs, y = torch.from_numpy(pairs_np), torch.from_numpy(labels_np)
        epochs = positive_integer(epochs, "epochs")
        batch_size = positive_integer(batch_size, "batch_size")
        # a patience of every epoch or more never stops early (and keeps the torch
        # comparison below within int64)
        patience = min(positive_integer(patience, "patience"), epochs)
        lr = positive_scalar(lr, "lr")
        if not 0 <= real_number(weight_decay, "weight_decay") < math.inf:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
        if not 0 <= real_number(val_fraction, "val_fraction") < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        run_seed = self.seed if seed is None else seed_argument(seed)
        resample = self.ensemble > 1 if bootstrap is None else bool(bootstrap)
        precision = resolve_precision(precision, self.device)
        if not self.hidden:  # a linear model has no hidden-layer product to speed up
            precision = "float32"

        if not warm_start and self._drawn_from != run_seed:
            self._init_parameters(run_seed)
        self._drawn_from = None  # from here on the weights are trained
        rng = np.random.default_rng(run_seed)
        num_pairs = checked_pairs.shape[0]
        num_val = int(round(val_fraction * num_pairs))
        if num_val >= num_pairs:
            num_val = num_pairs - 1
        split = rng.permutation(num_pairs)
        train_rows, val_rows = split[num_val:], split[:num_val]
        # the steps gather rows from the labelled responses alone: a small matrix that stays
        # in cache, instead of the whole (n, D) embedding matrix
        responses, local = np.unique(pairs_np, return_inverse=True)
        x = x[torch.from_numpy(responses).to(x.device)].to(self.device)
        local_pairs = local.reshape(pairs_np.shape)
        y_dev = y.to(self.device, torch.float32)
        held_out = _HeldOut.of(
            x, torch.from_numpy(local_pairs[val_rows]).to(self.device), y_dev[val_rows]
        )
        history = FitHistory(
            num_train_pairs=train_rows.size, num_val_pairs=num_val, precision=precision
        )
        members = (
            rng.choice(train_rows, size=(self.ensemble, train_rows.size), replace=True)
            if resample
            else np.broadcast_to(train_rows, (self.ensemble, train_rows.size))
        )

        params = self._parameters()
        training = _Training(params, lr, float(weight_decay))
        best_loss = torch.full((self.ensemble,), math.inf, device=self.device)
        best_params = [p.detach().clone() for p in params]
        best_epoch = torch.zeros(self.ensemble, dtype=torch.int64)
        stale = torch.zeros(self.ensemble, dtype=torch.int64)
        # the steps' rows in the precision they multiply in (_forward follows the rows)
        x_train = x.to(getattr(torch, precision))
        with free_core_threads(self.device) as adjust_threads:
            for epoch in range(epochs):
                adjust_threads()  # the other processes' load may have changed
                # every member's order is drawn, stopped or not, so each order is the same
                # whichever members are still training
                order = rng.permuted(members, axis=1)[training.members.numpy()]
                epoch_loss = torch.zeros((), device=self.device)
                for rows, sides, batch in _Batches(local_pairs, order, batch_size, self.device):
                    loss = self._batch_loss(
                        x_train, rows, sides, y_dev[batch], params=training.params
                    )
                    training.step(loss.sum())
                    epoch_loss += loss.detach().sum() * batch.shape[1]
                history.train_loss.append(float(epoch_loss) / order.size)
                if not math.isfinite(history.train_loss[-1]):
                    _diverged(params, best_params, epoch, history.train_loss[-1], lr, weight_decay)
                if held_out is None:
                    continue
                active = training.members.to(self.device)
                # a stopped member is its best weights: its held-out loss is its best loss
                val_loss = best_loss.clone()
                val_loss[active] = held_out.loss(self, training.params)
                history.val_loss.append(val_loss.tolist())
                improved = val_loss < best_loss
                best_loss = torch.where(improved, val_loss, best_loss)
                for kept, p in zip(best_params, training.params, strict=True):
                    kept[active[improved[active]]] = p.detach()[improved[active]]
                improved_cpu = improved.cpu()
                best_epoch[improved_cpu] = epoch
                stale = torch.where(improved_cpu, 0, stale + 1)
                # each member stops after `patience` epochs without a gain, the fit once all have
                going_on = training.members[stale[training.members] < patience]
                if going_on.numel() == 0:
                    break
                if going_on.numel() < training.members.numel():
                    training.keep(going_on)
        with torch.no_grad():
            for p, kept in zip(params, best_params, strict=True):
                p.requires_grad_(False)
                if held_out is not None:
                    p.copy_(kept)
        history.best_epoch = (
            best_epoch.tolist() if num_val else [len(history.train_loss) - 1] * self.ensemble
        )
        self.history_ = history
        return self

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write configuration and weights (a ``torch.save`` file of plain tensors).

        Parameters
        ----------
        path : str or os.PathLike
            The file to write; :meth:`load` reads it back.

        Raises
        ------
        RuntimeError
            If the file's folder does not exist (``torch.save`` creates none).
        OSError
            If the file cannot be written.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> import torch
        >>> from activerm_fast import RewardModel
        >>> model = RewardModel(8, hidden=(4,), ensemble=2, seed=3)
        >>> path = Path(tempfile.mkdtemp()) / "model.pt"
        >>> model.save(path)
        >>> x = torch.linspace(-1, 1, 48).reshape(6, 8)
        >>> torch.equal(RewardModel.load(path).rewards(x), model.rewards(x))  # the same weights
        True
        """
        torch.save(
            {
                "format": _FORMAT,
                "version": _FORMAT_VERSION,
                "config": {
                    "input_dim": self.input_dim,
                    "hidden": list(self.hidden),
                    "ensemble": self.ensemble,
                    "seed": self.seed,
                },
                "parameters": [p.detach().cpu() for p in self._parameters()],
            },
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> RewardModel:
        """Read a file written by :meth:`save` (safe loading: tensors and plain data only).

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`save`.
        device : str or torch.device, default "cpu"
            Where the loaded weights live.

        Returns
        -------
        RewardModel
            The saved configuration and weights.

        Raises
        ------
        ValueError
            If the file is not a saved RewardModel (truncated, corrupt, another format or
            version), naming it.
        OSError
            If the file is missing or unreadable.

        Examples
        --------
        >>> import os, tempfile
        >>> from activerm_fast import RewardModel
        >>> path = os.path.join(tempfile.mkdtemp(), "model.pt")
        >>> RewardModel(8, hidden=(16, 4), ensemble=3).save(path)
        >>> loaded = RewardModel.load(path)
        >>> loaded.input_dim, loaded.hidden, loaded.ensemble
        (8, (16, 4), 3)
        >>> with open(path, "wb") as file:
        ...     _ = file.write(b"not a model")
        >>> RewardModel.load(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ...model.pt is not a saved RewardModel (...)
        """
        device = device_argument(device)  # before the file: a bad device is no bad file
        if os.path.isdir(path):
            raise ValueError(f"{path} is a folder, not a saved RewardModel file")
        if os.path.isfile(path):
            # torch.save writes zip archives (anything else would reach the legacy unpickler),
            # whose CRCs torch.load does not check: a flipped bit would load as other weights
            problem = _archive_problem(path)
            if problem is not None:
                raise ValueError(f"{path} is not a saved RewardModel ({problem})")
        try:
            with warnings.catch_warnings():  # e.g. pickle-protocol notes on foreign files
                warnings.simplefilter("ignore")
                saved = torch.load(path, map_location="cpu", weights_only=True)
        except _UNREADABLE as err:
            # not torch's advice to load unsafely (weights_only=False runs the file's code)
            reason = (
                "it holds objects other than tensors and plain data"
                if isinstance(err, pickle.UnpicklingError)
                else first_line(err)
            )
            raise ValueError(f"{path} is not a saved RewardModel ({reason})") from err
        if not isinstance(saved, dict) or saved.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a saved RewardModel")
        if saved.get("version") != _FORMAT_VERSION:
            raise ValueError(
                f"{path} has RewardModel format version {saved.get('version')}, "
                f"this version reads {_FORMAT_VERSION}"
            )
        try:
            config, stored = saved["config"], saved["parameters"]
            model = cls(
                config["input_dim"],
                config["hidden"],
                config["ensemble"],
                config["seed"],
                device=device,
            )
            parameters = model.parameters()
            if not isinstance(stored, (list, tuple)) or len(stored) != len(parameters):
                raise ValueError(f"expected {len(parameters)} parameter tensors")
            with torch.no_grad():
                for p, value in zip(parameters, stored, strict=True):
                    if not isinstance(value, torch.Tensor) or p.shape != value.shape:
                        raise ValueError(
                            f"a parameter has shape {tuple(getattr(value, 'shape', ()))}, "
                            f"expected {tuple(p.shape)}"
                        )
                    if (
                        value.layout != torch.strided
                        or value.is_meta
                        or not (value.is_floating_point())
                    ):
                        raise ValueError(
                            f"a parameter is a {value.layout} {value.dtype} tensor"
                            f"{' on the meta device' if value.is_meta else ''}, expected dense "
                            "real numbers"
                        )
                    p.copy_(value)
                    if not bool(torch.isfinite(p).all()):
                        # every reward would be NaN, blamed on the embeddings it meets
                        raise ValueError("its weights are not all finite")
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: not a valid saved RewardModel ({first_line(err)})") from err
        return model

    def _check_memory(self) -> None:
        """A ValueError naming the sizes, before any allocation, when fitting the members would
        need more memory than the device has free (an allocation failure deep in the first
        draw, or the system killing the process, would say neither)."""
        widths = [self.input_dim, *self.hidden]
        count = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
        count += self.feature_dim  # theta
        # float32 weights, their gradients and AdamW's two moments
        needed = 16 * self.ensemble * count
        free = device_memory(self.device)
        if needed > free:
            raise ValueError(
                f"ensemble={self.ensemble} members of {count:,} parameters (input_dim="
                f"{self.input_dim}, hidden={self.hidden}) need {needed / 2**30:.1f} GiB to fit "
                f"(weights, gradients and AdamW moments), more than the {free / 2**30:.1f} GiB "
                f"free on {self.device}; use fewer members or narrower hidden layers"
            )

    def _init_parameters(self, seed: int) -> None:
        """PyTorch's nn.Linear initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), per member."""
        generator = torch.Generator().manual_seed(seed)
        widths = [self.input_dim, *self.hidden]

        def uniform(*shape: int, fan_in: int) -> torch.Tensor:
            values = torch.rand(self.ensemble, *shape, generator=generator)
            return values.mul_(2).sub_(1).div_(math.sqrt(fan_in)).to(self.device)  # in place

        self._weights = [
            uniform(a, b, fan_in=a) for a, b in zip(widths[:-1], widths[1:], strict=True)
        ]
        self._biases = [uniform(b, fan_in=a) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        self._theta = uniform(self.feature_dim, fan_in=self.feature_dim)
        self._drawn_from = seed

    def _parameters(self) -> list[torch.Tensor]:
        """:meth:`parameters`, for the model's own use (it knows what it does with them)."""
        return [*self._weights, *self._biases, self._theta]

    def _per_row(
        self, embeddings: Any, head: Callable[[torch.Tensor], torch.Tensor]
    ) -> np.ndarray | torch.Tensor:
        """``head(features)`` over row chunks, concatenated along the row axis (dim 1)."""
        x = self._embeddings(embeddings, "embeddings")
        with torch.no_grad(), free_core_threads(self.device):
            out = torch.cat(
                [head(self._forward(c)) for c in torch.split(x, _INFERENCE_ROWS)], dim=1
            )
        # finite float32 embeddings can still overflow the layers' products: refuse, never NaN
        if not bool(torch.isfinite(out).all()):
            raise ValueError(
                f"embeddings up to {float(x.abs().max()):.3g} overflow the reward model's "
                "float32 layers (non-finite outputs); rescale them"
            )
        return out if isinstance(embeddings, torch.Tensor) else out.cpu().numpy()

    def _forward(
        self, x: torch.Tensor, params: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Features (E, b, d) of shared rows x (b, D) or per-member rows x (E, b, D), with the
        model's weights or ``params`` (the :meth:`parameters` of some of its members)."""
        if not self.hidden:
            e = self.ensemble if params is None else params[-1].shape[0]
            return x.expand(e, *x.shape[-2:]) if x.ndim == 2 else x
        layers = len(self.hidden)
        params = self._parameters() if params is None else params
        h = x
        for weight, bias in zip(params[:layers], params[layers : 2 * layers], strict=True):
            if weight.dtype != h.dtype:  # rows in a lower precision: multiply in it
                weight, bias = weight.to(h.dtype), bias.to(h.dtype)
            if h.ndim == 2:  # shared rows: one (b, D) x (D, E*H) product for all members
                e, d_in, d_out = weight.shape
                flat = weight.permute(1, 0, 2).reshape(d_in, e * d_out)
                h = (h @ flat).reshape(h.shape[0], e, d_out).permute(1, 0, 2) + bias[:, None, :]
            else:
                h = torch.baddbmm(bias[:, None, :], h, weight)
            h = F.gelu(h)
        return h

    def _batch_loss(
        self,
        x: torch.Tensor,
        rows: torch.Tensor,
        sides: torch.Tensor,
        y: torch.Tensor,
        *,
        params: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """(E,) mean BT loss of each member of ``params`` on its own batch of b pairs: the
        rows of x its pairs compare (E, m), where the first then the second response of each
        pair is among them (E, 2b), and the labels (E, b)."""
        b = y.shape[1]
        features = self._forward(x[rows], params).to(params[-1].dtype)
        r = torch.bmm(features, params[-1][:, :, None]).squeeze(-1)
        r = r.gather(1, sides)  # each pair side's reward
        margin = r[:, :b] - r[:, b:]
        return F.binary_cross_entropy_with_logits(margin, y, reduction="none").mean(dim=1)

    def _embeddings(self, embeddings: Any, name: str) -> torch.Tensor:
        return embeddings_tensor(embeddings, name, columns=self.input_dim, device=self.device)
