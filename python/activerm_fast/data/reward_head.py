"""A reward model's score head as the model selection runs with: :class:`RewardHead`.

:func:`~activerm_fast.data.embed` saves the head (weight, bias) of a
``...ForSequenceClassification`` reward model beside the hidden states that feed it. With the
head as the model, :func:`~activerm_fast.select_with_model` and ``activerm-fast select
--reward-head`` design on the reward model's own last layer with its own rewards and Fisher
weights; the package's MLP head stays available on the same features.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._validation import first_line, known_name
from ..selection.api import STRATEGIES
from .annotation import BatchPlan
from .dataset import Dataset
from .npz_files import UNREADABLE_NPZ, npz_member

__all__ = ["RewardHead", "head_plan"]


def _real_array(x: Any, name: str) -> np.ndarray:
    """``x`` as an array of real numbers; a TypeError naming ``name`` for any other kind."""
    array = np.asarray(x)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array


class RewardHead:
    """A reward model's linear score head, as a model for :func:`~activerm_fast.select_with_model`.

    ``features_and_rewards(features)`` returns the features as given (the hidden states that
    feed the head) and ``features @ weight[output] + bias[output]``, so selection designs on the
    reward model's last layer with its own rewards and Fisher weights.

    Parameters
    ----------
    weight : array_like
        (L, d) or (d,) head weight.
    bias : array_like or None
        (L,) head bias (None: zero).
    output : int
        Which of the L outputs is the reward.

    Raises
    ------
    ValueError
        When the shapes disagree or ``output`` is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> head = RewardHead(np.array([[1.0, -1.0]]), np.array([0.5]))
    >>> features, rewards = head.features_and_rewards(np.array([[2.0, 1.0]], np.float32))
    >>> rewards.tolist()
    [1.5]
    """

    def __init__(self, weight: Any, bias: Any | None = None, *, output: int = 0) -> None:
        w = torch.as_tensor(_real_array(weight, "weight"), dtype=torch.float64)
        if w.ndim == 1:
            w = w[None]
        if w.ndim != 2 or 0 in w.shape or not torch.isfinite(w).all():
            raise ValueError(f"weight must be a finite (L, d) array, got shape {tuple(w.shape)}")
        b = torch.zeros(w.shape[0], dtype=torch.float64)
        if bias is not None:
            b = torch.as_tensor(_real_array(bias, "bias"), dtype=torch.float64).reshape(-1)
            if b.shape != (w.shape[0],):
                raise ValueError(f"bias must have shape ({w.shape[0]},), got {tuple(b.shape)}")
        if isinstance(output, bool) or not isinstance(output, int) or not 0 <= output < w.shape[0]:
            raise ValueError(f"output must be an integer in [0, {w.shape[0]}), got {output!r}")
        self.weight, self.bias, self.output = w, b, output

    @property
    def input_dim(self) -> int:
        """The feature dimension d the head reads."""
        return int(self.weight.shape[1])

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, output: int = 0) -> RewardHead:
        """The score head saved by :func:`embed` in ``path``.

        Parameters
        ----------
        path : str or os.PathLike
            An ``.npz`` written by :func:`embed` from a reward model.
        output : int
            Which output of the head is the reward.

        Returns
        -------
        RewardHead

        Raises
        ------
        ValueError
            When the file holds no score head (embedded from a model without one).
        FileNotFoundError
            When there is no such file.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "embedded.npz"
        >>> np.savez(path, head_weight=np.ones((1, 3), np.float32), head_bias=np.zeros(1))
        >>> RewardHead.load(path).input_dim
        3
        """
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"{file}: no such file to read a score head from")
        try:
            with np.load(file, allow_pickle=False) as archive:
                head = "head_weight" in archive.files
                if head:
                    weight, bias = (npz_member(archive, k) for k in ("head_weight", "head_bias"))
        except (OSError, *UNREADABLE_NPZ) as err:
            raise ValueError(f"{file}: cannot read the score head ({first_line(err)})") from err
        if not head:
            raise ValueError(
                f"{file}: holds no score head (head_weight): it was not embedded from a "
                "reward model (...ForSequenceClassification) with rewards"
            )
        try:
            return cls(weight, bias, output=output)
        except TypeError as err:
            raise TypeError(f"{file}: head_{first_line(err)}") from None

    def rewards(self, features: Any) -> np.ndarray | torch.Tensor:
        """(n,) float32 rewards of (n, d) features, accumulated in float64.

        Parameters
        ----------
        features : array_like or torch.Tensor
            (n, d) features; a tensor gives a tensor on its device.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            ``features @ weight[output] + bias[output]``.

        Raises
        ------
        ValueError
            When ``features`` is not (n, d) for this head's d.

        Examples
        --------
        >>> head = RewardHead(np.array([[2.0, 0.0], [0.0, 1.0]]), output=1)
        >>> head.rewards(np.array([[1.0, 3.0]])).tolist()
        [3.0]
        """
        x = torch.as_tensor(features)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(
                f"features must have shape (n, {self.input_dim}) for this head, got "
                f"{tuple(x.shape)}"
            )
        w = self.weight[self.output].to(x.device)
        r = (x.double() @ w + self.bias[self.output].to(x.device)).float()
        return r if isinstance(features, torch.Tensor) else r.numpy()

    def features_and_rewards(
        self, embeddings: Any
    ) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]:
        """The features as given and their rewards: what
        :func:`~activerm_fast.select_with_model` calls.

        Parameters
        ----------
        embeddings : array_like or torch.Tensor
            (n, d) features written by :func:`~activerm_fast.data.embed`.

        Returns
        -------
        tuple
            ``embeddings`` itself and :meth:`rewards` of it.

        Examples
        --------
        >>> import activerm_fast as arm
        >>> rng = np.random.default_rng(0)
        >>> features = rng.normal(size=(40, 4)).astype(np.float32)
        >>> head = RewardHead(rng.normal(size=(1, 4)))
        >>> pool = arm.pairs.cross_prompt(np.arange(40) // 4, 100, seed=0)
        >>> arm.select_with_model("dopt-greedy", head, features, pool, 5).indices.shape
        (5,)
        """
        return embeddings, self.rewards(embeddings)


def head_plan(
    dataset: Dataset, head: RewardHead, labelled_pairs: np.ndarray, strategy: str
) -> BatchPlan:
    """What the next batch is chosen with when the reward model's head is the model: the
    dataset's embeddings as the features and the head's rewards, from the first batch on.

    Parameters
    ----------
    dataset : Dataset
        Features written by :func:`~activerm_fast.data.embed`.
    head : RewardHead
        The score head saved with them.
    labelled_pairs : numpy.ndarray
        (M, 2) pairs labelled so far (never chosen again; past-aware strategies use them).
    strategy : str
        A name in :data:`~activerm_fast.STRATEGIES`.

    Returns
    -------
    BatchPlan

    Raises
    ------
    ValueError
        When the head reads features of another dimension than the dataset's.

    Examples
    --------
    >>> from activerm_fast.data import from_arrays
    >>> dataset = from_arrays(np.eye(4, dtype=np.float32), [0, 0, 1, 1])
    >>> plan = head_plan(dataset, RewardHead(np.arange(4.0)), np.empty((0, 2), int), "dopt-greedy")
    >>> plan.rewards.tolist()
    [0.0, 1.0, 2.0, 3.0]
    """
    strategy = known_name(strategy, STRATEGIES, "strategy")
    if head.input_dim != dataset.dim:
        raise ValueError(
            f"the score head reads {head.input_dim}-dimensional features, but {dataset.name} "
            f"has {dataset.dim}-dimensional embeddings"
        )
    features, rewards = head.features_and_rewards(dataset.embeddings)
    note = f"chose with {strategy!r} on the reward model's score head and its last layer"
    return BatchPlan(strategy, features, rewards, labelled_pairs, note)
