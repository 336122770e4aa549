"""Features and rewards from the user's own Hugging Face model: :func:`embed`.

A ``...ForSequenceClassification`` reward model gives, for every (prompt, response), the hidden
state that feeds its score head at the token it pools (the rightmost token that is not its
padding token), its score (the head's output) and the head itself (weight and bias, read back
by :class:`~activerm_fast.data.reward_head.RewardHead`), so the design runs on the reward
model's own last layer with its own rewards. A base or causal
LM gives the last-token or mean-pooled hidden state of a chosen layer.

The texts are rendered with the tokenizer's chat template when it has one (the prompt's
messages, then the response as the assistant turn); otherwise as the prompt text, a blank line
and the response, with the tokenizer's special tokens. Each shard of rows is tokenised in a
background thread while the previous one runs through the model, sorted by length and cut into
batches padded to their own longest row. Shards are written as they are done
(:mod:`~activerm_fast.data.feature_store`), so a killed run resumes, and under torchrun each
rank embeds its own shards. The result is one ``.npz`` that :func:`~activerm_fast.load` reads.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from .._validation import describe, device_argument, first_line, known_name, positive_integer
from .feature_store import ShardStore
from .text_records import TextRows, prompt_text, read_text_rows

__all__ = ["COMPUTE_DTYPES", "OUTPUT_DTYPES", "POOLINGS", "EmbedSummary", "embed"]

POOLINGS = ("last", "mean")
COMPUTE_DTYPES = ("auto", "float32", "bfloat16", "float16")
OUTPUT_DTYPES = ("float32", "float16")
# between the prompt and the response when the tokenizer has no chat template
SEPARATOR = "\n\n"
_INSTALL = "pip install 'activerm_fast[hf]'"
_FORMAT = 1  # of meta.json: a folder of another format is not resumed
T = TypeVar("T")


@dataclass(frozen=True)
class EmbedSummary:
    """What :func:`embed` wrote.

    Attributes
    ----------
    path : Path
        The finished ``.npz``.
    rows, dim : int
        Rows embedded and the feature dimension.
    tokens : int
        Tokens fed to the model (after truncation, without padding).
    truncated : int
        Rows cut to ``max_length`` tokens.
    max_length : int
        The token limit used.
    resumed_rows : int
        Rows a previous, interrupted run had written already.
    seconds : float
        Time of this run's model passes.
    has_head : bool
        Whether rewards and the score head were saved.
    chat_template : bool
        Whether the tokenizer's chat template rendered the texts.

    Examples
    --------
    >>> summary = EmbedSummary(Path("out.npz"), 1000, 4096, 250_000, 3, 2048, 0, 12.5, True, True)
    >>> summary.describe()  # doctest: +ELLIPSIS
    'wrote out.npz: 1000 rows of 4096-d features, rewards and the score head; 250000 tokens, ...'
    """

    path: Path
    rows: int
    dim: int
    tokens: int
    truncated: int
    max_length: int
    resumed_rows: int
    seconds: float
    has_head: bool
    chat_template: bool

    def describe(self) -> str:
        """One line for the command line (example: the class's)."""
        head = ", rewards and the score head" if self.has_head else ""
        resumed = f" ({self.resumed_rows} from an earlier run)" if self.resumed_rows else ""
        return (
            f"wrote {self.path}: {self.rows} rows{resumed} of {self.dim}-d features{head}; "
            f"{self.tokens} tokens, {self.truncated} rows truncated to {self.max_length} tokens"
        )


def embed(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    rewards: bool | None = None,
    layer: int = -1,
    pooling: str = "last",
    max_length: int | None = None,
    batch_size: int = 32,
    shard_rows: int = 1024,
    dtype: str = "auto",
    output_dtype: str = "float32",
    device: str | torch.device | None = None,
    progress: bool = True,
) -> EmbedSummary:
    """Embed every (prompt, response) of ``data`` with a local Hugging Face model into ``out``.

    Parameters
    ----------
    model : str or os.PathLike
        A local model folder (``config.json``, weights, tokenizer); nothing is downloaded.
    data : str or os.PathLike
        Texts in any form :func:`~activerm_fast.data.text_records.read_text_rows` reads:
        the package's JSONL records, TRL preference rows, UltraFeedback-style rows, as
        ``.jsonl`` / ``.parquet`` or a ``datasets.save_to_disk`` folder.
    out : str or os.PathLike
        The ``.npz`` to write. Shards go to ``OUT.parts/`` while the run lasts; run the same
        call again after an interruption to resume.
    rewards : bool or None
        Take the score head's rewards: None takes them when the model has one (a
        ``...ForSequenceClassification``), True requires them, False takes hidden states only.
    layer : int
        The hidden layer without rewards (-1: the last, after the final norm; 0: the token
        embeddings). With rewards it is the head's input, so only -1.
    pooling : str
        ``"last"`` (the token the head pools; for a base LM the last non-padding token) or
        ``"mean"`` (over the non-padding tokens; not with rewards).
    max_length : int or None
        Token limit per row (None: the tokenizer's or the model's limit). Longer rows are cut
        on the tokenizer's ``truncation_side`` and counted.
    batch_size : int
        Rows per forward pass; halved and retried when CUDA runs out of memory.
    shard_rows : int
        Rows per shard on disk (the unit of resuming and of the ranks' work).
    dtype : str
        The model's compute dtype: ``"auto"`` is bfloat16 on CUDA (float16 where bfloat16 is
        not supported) and float32 on the CPU.
    output_dtype : str
        ``"float32"`` or ``"float16"`` features on disk (rewards are always float32).
    device : str, torch.device or None
        Where the model runs; None: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.
    progress : bool
        Show a progress bar with rows/s and tokens/s (on rank 0).

    Returns
    -------
    EmbedSummary
        What was written, with token and truncation counts.

    Raises
    ------
    ValueError
        Naming the file or field at fault: a corrupt model folder, a model without a score
        head when ``rewards=True``, malformed or empty texts, a ``max_length`` shorter than a
        prompt, a settings mismatch with an interrupted run in ``OUT.parts/``.
    FileNotFoundError
        When the model folder or the data does not exist.
    FileExistsError
        When ``out`` exists already.
    ImportError
        When transformers is not installed (``pip install 'activerm_fast[hf]'``).

    Notes
    -----
    Under torchrun (an initialised ``torch.distributed`` process group) every rank embeds the
    shards ``rank, rank + world, ...`` into the same ``OUT.parts/`` (a shared file system) and
    rank 0 writes ``out``: the same file as one process writes.

    Examples
    --------
    >>> summary = embed("my-reward-model", "prefs.jsonl", "prefs.npz")  # doctest: +SKIP
    >>> dataset = activerm_fast.load("prefs.npz")  # doctest: +SKIP
    >>> head = activerm_fast.data.RewardHead.load("prefs.npz")  # doctest: +SKIP
    >>> batch = activerm_fast.select_with_model(  # doctest: +SKIP
    ...     "dopt-greedy", head, dataset.embeddings, pool, 100)
    """
    settings = _Settings.checked(
        rewards,
        layer=layer,
        pooling=pooling,
        max_length=max_length,
        batch_size=batch_size,
        shard_rows=shard_rows,
        dtype=dtype,
        output_dtype=output_dtype,
    )
    rank, world = _rank_and_world()

    def prepare() -> tuple[TextRows, _Encoder, ShardStore]:
        target = _out_path(out)
        rows = read_text_rows(data)
        encoder = _Encoder.load(model, settings, device, rank)
        # rank 0 alone checks and writes the description (store.open, _finish): the others
        # need not read every model file for its digests
        meta = _meta(model, data, rows, encoder, settings=settings) if rank == 0 else {}
        return rows, encoder, ShardStore(target, meta, shard_rows, rows.n)

    rows, encoder, store = _on_every_rank(prepare, world)
    _on_every_rank(lambda: store.open() if rank == 0 else None, world)
    missing = store.missing()
    resumed = rows.n - sum(len(store.rows_of(s)) for s in missing)
    mine = [s for s in missing if s % world == rank]
    seconds = _on_every_rank(
        lambda: _embed_shards(rows, encoder, store, mine, progress=progress and rank == 0), world
    )
    summary = _on_every_rank(
        lambda: (
            _finish(rows, encoder, store, resumed=resumed, seconds=seconds) if rank == 0 else None
        ),
        world,
    )
    if world > 1:  # rank 0's summary on every rank, once its file is there
        box = [summary]
        torch.distributed.broadcast_object_list(box, src=0)
        summary = box[0]
    assert summary is not None, "written by rank 0"
    if summary.truncated:
        warnings.warn(
            f"{summary.truncated} of {summary.rows} rows were longer than max_length="
            f"{summary.max_length} tokens and were truncated",
            stacklevel=2,
        )
    return summary


# ---- settings and paths -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    rewards: bool | None
    layer: int
    pooling: str
    max_length: int | None
    batch_size: int
    shard_rows: int
    dtype: str
    output_dtype: str

    @classmethod
    def checked(
        cls,
        rewards: Any,
        *,
        layer: Any,
        pooling: Any,
        max_length: Any,
        batch_size: Any,
        shard_rows: Any,
        dtype: Any,
        output_dtype: Any,
    ) -> _Settings:
        if rewards is not None and not isinstance(rewards, bool):
            raise TypeError(f"rewards must be True, False or None, got {describe(rewards)}")
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise TypeError(f"layer must be an integer, got {describe(layer)}")
        pooling = known_name(pooling, POOLINGS, "pooling")
        if rewards and (layer != -1 or pooling != "last"):
            raise ValueError(
                f"rewards=True reads the score head's input, the last layer at the pooled token: "
                f"layer must be -1 and pooling 'last', got layer={layer}, pooling={pooling!r}"
            )
        if max_length is not None:
            max_length = positive_integer(max_length, "max_length")
        return cls(
            rewards=rewards,
            layer=layer,
            pooling=pooling,
            max_length=max_length,
            batch_size=positive_integer(batch_size, "batch_size"),
            shard_rows=positive_integer(shard_rows, "shard_rows"),
            dtype=known_name(dtype, COMPUTE_DTYPES, "dtype"),
            output_dtype=known_name(output_dtype, OUTPUT_DTYPES, "output_dtype"),
        )


def _out_path(out: Any) -> Path:
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a path, got {describe(out)}")
    path = Path(out)
    if path.suffix != ".npz":
        raise ValueError(f"out must name a .npz file, got {str(out)!r}")
    if path.exists():
        raise FileExistsError(f"{path} exists already: remove it or choose another out")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such folder for out")
    return path


def _meta(
    model: Any, data: Any, rows: TextRows, encoder: _Encoder, *, settings: _Settings
) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one."""
    model_dir = Path(model).resolve()
    return {
        "format": _FORMAT,
        "model": str(model_dir),
        "model_files": {f.name: _digest([f]) for f in sorted(model_dir.iterdir()) if f.is_file()},
        "data": str(Path(data).resolve()),
        "data_digest": _digest(_files(Path(data))),
        "rows": rows.n,
        "rewards": encoder.head is not None,
        "layer": settings.layer,
        "pooling": settings.pooling,
        "max_length": encoder.max_length,
        "chat_template": encoder.chat_template,
        "dtype": str(encoder.model.dtype),  # shards of one file share one compute dtype
        "output_dtype": settings.output_dtype,
        "shard_rows": settings.shard_rows,
    }


def _files(path: Path) -> list[Path]:
    """The file, or every file under the folder, in a fixed order."""
    return sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]


def _digest(files: list[Path]) -> str:
    """The sha256 of the files' bytes (and names, relative order kept): a checkpoint of the
    same shape as the last, or a text edited to the same length, is another run's input."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}:{path.stat().st_size};".encode())
        with open(path, "rb") as file:
            while chunk := file.read(_DIGEST_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


# bytes read at a time for a digest
_DIGEST_CHUNK = 1 << 23


# ---- the model ------------------------------------------------------------------------------


@contextmanager
def _quiet_transformers() -> Iterator[Any]:
    """transformers imported, its loading reports and progress bars off while inside."""
    try:
        import transformers
    except ImportError as err:
        raise ImportError(
            f"embedding with a Hugging Face model needs transformers: {_INSTALL}"
        ) from err
    logging: Any = transformers.utils.logging  # untyped functions
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield transformers
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


class _Encoder:
    """A tokenizer and model that turn rendered rows into (features, rewards)."""

    def __init__(
        self, tokenizer: Any, model: Any, settings: _Settings, *, head: Any | None, max_length: int
    ) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.settings = settings
        self.head = head
        self.max_length = max_length
        self.chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.device = next(model.parameters()).device
        config = model.config.get_text_config()
        # the ids the model reads as padding: its own pooling skips them
        self.model_pad_id = config.pad_token_id if head is not None else None
        pad = self.model_pad_id if self.model_pad_id is not None else tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else 0
        self.left = tokenizer.padding_side == "left"
        self.cut_left = tokenizer.truncation_side == "left"
        base = model.base_model if head is not None else model
        self.base = base
        self.takes_positions = "position_ids" in inspect.signature(base.forward).parameters
        self.batch_size = settings.batch_size

    @property
    def dim(self) -> int:
        return int(self.model.config.get_text_config().hidden_size)

    @classmethod
    def load(
        cls, path: Any, settings: _Settings, device: str | torch.device | None, rank: int
    ) -> _Encoder:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"model must be a path to a model folder, got {describe(path)}")
        folder = Path(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"model {folder}: no such folder")
        if not (folder / "config.json").is_file():
            raise ValueError(f"model {folder}: no config.json, not a Hugging Face model folder")
        where = _device(device, rank)
        with _quiet_transformers() as transformers:
            try:
                config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
            except (OSError, ValueError, KeyError) as err:
                raise ValueError(
                    f"model {folder}/config.json: cannot read it ({first_line(err)})"
                ) from None
            depth = getattr(config, "num_hidden_layers", None)
            if isinstance(depth, int) and not -(depth + 1) <= settings.layer <= depth:
                # hidden_states holds the token embeddings and one entry per layer
                raise ValueError(
                    f"layer must be in {-(depth + 1)}..{depth} for model {folder} of {depth} "
                    f"layers (0: the token embeddings), got {settings.layer}"
                )
            architectures = list(getattr(config, "architectures", None) or [])
            scored = any(a.endswith("ForSequenceClassification") for a in architectures)
            if settings.rewards and not scored:
                raise ValueError(
                    f"model {folder}: {architectures or 'its model'} has no score head (not a "
                    "...ForSequenceClassification); embed with rewards=False (--no-rewards) for "
                    "its hidden states"
                )
            take_head = scored and settings.rewards is not False
            take_head = take_head and settings.layer == -1 and settings.pooling == "last"
            auto = (
                transformers.AutoModelForSequenceClassification
                if take_head
                else transformers.AutoModel
            )
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(
                    folder, local_files_only=True
                )
            except Exception as err:  # whatever a broken tokenizer file raises
                raise ValueError(
                    f"model {folder}: cannot load the tokenizer ({first_line(err)})"
                ) from None
            try:
                loaded = auto.from_pretrained(
                    folder, local_files_only=True, dtype=_compute_dtype(settings.dtype, where)
                )
            except Exception as err:  # safetensors, torch and transformers each raise their own
                raise ValueError(
                    f"model {folder}: cannot load the weights ({first_line(err)})"
                ) from None
        head = getattr(loaded, "score", None) if take_head else None
        if take_head and not isinstance(head, torch.nn.Linear):
            raise ValueError(
                f"model {folder}: {type(loaded).__name__} has no linear score head ('score') on "
                "its last token; embed with rewards=False for its hidden states"
            )
        loaded.to(where).eval()
        return cls(
            tokenizer,
            loaded,
            settings,
            head=head,
            max_length=_max_length(settings, tokenizer, config),
        )

    # -- texts to token ids

    def text(self, rows: TextRows, row: int) -> str:
        """One row rendered whole: its prompt's messages, then the response."""
        messages = rows.prompts[int(rows.prompt_of_row[row])]
        if not self.chat_template:
            return prompt_text(messages) + SEPARATOR + rows.responses[row]
        chat = [{"role": role, "content": content} for role, content in messages]
        reply = {"role": "assistant", "content": rows.responses[row]}
        rendered: str = self.tokenizer.apply_chat_template([*chat, reply], tokenize=False)
        return rendered

    def prompt_alone(self, rows: TextRows, row: int) -> str:
        """What a row's response is appended to: its prompt, as rendered before the reply."""
        messages = rows.prompts[int(rows.prompt_of_row[row])]
        if not self.chat_template:
            return prompt_text(messages) + SEPARATOR
        chat = [{"role": role, "content": content} for role, content in messages]
        rendered: str = self.tokenizer.apply_chat_template(
            chat, tokenize=False, add_generation_prompt=True
        )
        return rendered

    def tokenise(self, rows: TextRows, indices: range) -> _Tokenised:
        """Token ids of the rows, cut to ``max_length``; a row whose prompt alone does not fit
        is refused."""
        special = not self.chat_template  # a chat template writes the special tokens itself
        whole = [self.text(rows, i) for i in indices]
        ids = self.tokenizer(whole, add_special_tokens=special)["input_ids"]
        long = [k for k, seq in enumerate(ids) if len(seq) > self.max_length]
        if long:  # the prompts of the rows to cut, to tell a cut response from no response
            prompts = [self.prompt_alone(rows, indices[k]) for k in long]
            lengths = self.tokenizer(prompts, add_special_tokens=special, return_length=True)
            for k, length in zip(long, lengths["length"], strict=True):
                if length >= self.max_length:
                    lost = "its whole prompt" if self.cut_left else "every token of its response"
                    raise ValueError(
                        f"{rows.source}: max_length={self.max_length} is shorter than the prompt "
                        f"of row {indices[k]} ({length} tokens): truncation would cut {lost}"
                    )
                ids[k] = ids[k][-self.max_length :] if self.cut_left else ids[k][: self.max_length]
        return _Tokenised(ids, len(long))

    # -- ids to features

    def forward(self, batch: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, d) float32 features and (B, L) float32 rewards (None without a head) of one
        batch, padded to its longest row."""
        width = max(len(seq) for seq in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.int64)
        mask = torch.zeros((len(batch), width), dtype=torch.int64)
        for r, seq in enumerate(batch):
            cols = slice(width - len(seq), width) if self.left else slice(0, len(seq))
            ids[r, cols] = torch.tensor(seq, dtype=torch.int64)
            mask[r, cols] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "use_cache": False}
        if self.takes_positions:  # positions count real tokens: left padding moves nothing
            inputs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            if self.settings.layer == -1:
                hidden = self.base(**inputs).last_hidden_state
            else:
                hidden = self.base(**inputs, output_hidden_states=True).hidden_states[
                    self.settings.layer
                ]
            if self.settings.pooling == "mean":
                weights = mask.to(torch.float32)[..., None]
                pooled = (hidden.float() * weights).sum(1) / weights.sum(1)
                return pooled, None
            positions = torch.arange(width, device=self.device)
            if self.model_pad_id is not None:  # the model's own rule: rightmost non-pad id
                real = (ids != self.model_pad_id).to(torch.int64)
            else:
                real = mask
            last = (positions * real).argmax(-1)
            pooled = hidden[torch.arange(len(batch), device=self.device), last]
            scores = None if self.head is None else self.head(pooled).float()
            if scores is not None and scores.shape[1] == 1:
                scores = scores[:, 0]
            return pooled.float(), scores


@dataclass
class _Tokenised:
    ids: list[list[int]]
    truncated: int


def _device(device: str | torch.device | None, rank: int) -> torch.device:
    if device is not None:
        return device_argument(device)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank))
        return torch.device("cuda", local % torch.cuda.device_count())
    return torch.device("cpu")


def _compute_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    dtype: torch.dtype = getattr(torch, name)
    return dtype


def _max_length(settings: _Settings, tokenizer: Any, config: Any) -> int:
    """The limit asked for (at most the model's positions), else the smaller of the
    tokenizer's and the model's."""
    positions = getattr(config.get_text_config(), "max_position_embeddings", None)
    limits = [settings.max_length] if settings.max_length is not None else []
    if limits and isinstance(positions, int) and limits[0] > positions:
        raise ValueError(
            f"max_length={limits[0]} is more than the model's {positions} positions "
            "(max_position_embeddings); pass at most that"
        )
    if not limits:
        model_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and model_max < 10**7:  # "no limit" is a huge number
            limits.append(model_max)
        if isinstance(positions, int):
            limits.append(positions)
    if not limits:
        raise ValueError("the model and tokenizer name no length limit: pass max_length")
    return min(limits)


# ---- the run ---------------------------------------------------------------------------------


def _embed_shards(
    rows: TextRows, encoder: _Encoder, store: ShardStore, shards: list[int], *, progress: bool
) -> float:
    """Embed ``shards`` one after another, tokenising the next in a background thread; each
    written whole when done. Returns the seconds spent."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    total = sum(len(store.rows_of(s)) for s in shards)
    bar = tqdm(total=total, unit="row", disable=not progress, desc="embed", smoothing=0.1)
    tokens_done = 0
    with ThreadPoolExecutor(max_workers=1) as pool, bar:
        ahead: Future[_Tokenised] | None = None
        for number, shard in enumerate(shards):
            tokenised = (
                ahead.result()
                if ahead is not None
                else encoder.tokenise(rows, store.rows_of(shard))
            )
            if number + 1 < len(shards):
                ahead = pool.submit(encoder.tokenise, rows, store.rows_of(shards[number + 1]))
            features, scores = _run_shard(
                encoder, tokenised.ids, bar, started=started, tokens_before=tokens_done
            )
            tokens = sum(len(seq) for seq in tokenised.ids)
            tokens_done += tokens
            arrays = {
                "features": features.astype(np.dtype(encoder.settings.output_dtype)),
                "tokens": np.int64(tokens),
                "truncated": np.int64(tokenised.truncated),
            }
            if scores is not None:
                arrays["rewards"] = scores
            store.write(shard, arrays)
    return time.perf_counter() - started


def _run_shard(
    encoder: _Encoder, ids: list[list[int]], bar: Any, *, started: float, tokens_before: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """The features (and rewards) of one shard's rows, in their order: longest rows first in
    batches padded to their own longest row; a batch that runs out of CUDA memory is retried
    in halves, and the smaller size kept."""
    order = sorted(range(len(ids)), key=lambda k: -len(ids[k]))
    features = np.empty((len(ids), encoder.dim), np.float32)
    scores: np.ndarray | None = None
    done, tokens = 0, tokens_before
    while done < len(order):
        chunk = order[done : done + encoder.batch_size]
        try:
            pooled, rewards = encoder.forward([ids[k] for k in chunk])
        except torch.cuda.OutOfMemoryError:  # the name every torch >= 2.2 has
            if len(chunk) == 1:
                raise MemoryError(
                    f"out of memory on one row of {len(ids[chunk[0]])} tokens: lower "
                    "max_length or use a larger device"
                ) from None
            if encoder.device.type == "cuda":
                torch.cuda.empty_cache()
            encoder.batch_size = max(1, len(chunk) // 2)
            continue
        features[chunk] = pooled.cpu().numpy()
        if rewards is not None:
            if scores is None:  # (n,) for the usual single score, else (n, L)
                scores = np.empty((len(ids), *rewards.shape[1:]), np.float32)
            scores[chunk] = rewards.cpu().numpy()
        done += len(chunk)
        tokens += sum(len(ids[k]) for k in chunk)
        bar.update(len(chunk))
        elapsed = max(time.perf_counter() - started, 1e-9)
        bar.set_postfix_str(f"{tokens / elapsed:,.0f} tokens/s", refresh=False)
    return features, scores


def _finish(
    rows: TextRows, encoder: _Encoder, store: ShardStore, *, resumed: int, seconds: float
) -> EmbedSummary:
    """Write the finished ``.npz`` from the shards and the rows' own columns."""
    missing = store.missing()
    if missing:
        raise ValueError(
            f"{store.folder}: shards {missing[:5]} are missing after every rank finished"
        )
    names = np.asarray(rows.prompt_names)
    columns: dict[str, np.ndarray] = {"prompt_ids": names[rows.prompt_of_row]}
    if rows.gold is not None:
        columns["gold"] = rows.gold
    if rows.pairs is not None:
        columns["pairs"] = rows.pairs
        columns["labels"] = np.ones(len(rows.pairs), np.int64)
    columns.update(_texts(rows))
    streamed = {"features": "embeddings"}  # shard key -> key of the finished file
    if encoder.head is not None:
        columns["head_weight"] = encoder.head.weight.detach().float().cpu().numpy()
        bias = encoder.head.bias
        columns["head_bias"] = (
            np.zeros(encoder.head.out_features, np.float32)
            if bias is None
            else bias.detach().float().cpu().numpy()
        )
        streamed["rewards"] = "model_rewards"
    tokens, truncated = store.totals("tokens"), store.totals("truncated")
    info = {
        key: store.meta[key]
        for key in ("model", "data", "rewards", "layer", "pooling", "max_length", "chat_template")
    }
    columns["embed_info"] = np.array(json.dumps({**info, "tokens": tokens, "truncated": truncated}))
    store.finish(columns, streamed)
    return EmbedSummary(
        path=store.out,
        rows=rows.n,
        dim=encoder.dim,
        tokens=tokens,
        truncated=truncated,
        max_length=encoder.max_length,
        resumed_rows=resumed,
        seconds=seconds,
        has_head=encoder.head is not None,
        chat_template=encoder.chat_template,
    )


def _texts(rows: TextRows) -> dict[str, np.ndarray]:
    """Prompt and response texts (and model names) in the packaged arena-bench layout: one
    UTF-8 buffer with offsets, prompts first; :func:`~activerm_fast.load` reads them back."""
    encoded = [prompt_text(p).encode("utf-8") for p in rows.prompts]
    encoded += [r.encode("utf-8") for r in rows.responses]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    texts: dict[str, np.ndarray] = {
        "text_utf8": np.frombuffer(b"".join(encoded), np.uint8),
        "text_offsets": offsets,
    }
    if rows.models is not None:
        names, ids = np.unique(np.array(rows.models), return_inverse=True)
        texts["model_names"], texts["model_ids"] = names, ids.astype(np.int64)
    return texts


# ---- ranks -----------------------------------------------------------------------------------


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _on_every_rank(call: Callable[[], T], world: int) -> T:
    """``call()``, and with several ranks agreed: a failure on any rank raises on every rank."""
    if world == 1:
        return call()
    from .. import distributed  # imports the selection layer, which imports this package

    return distributed.agreed(call)
