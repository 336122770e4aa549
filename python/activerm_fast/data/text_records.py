"""Prompt/response texts from the files users have, for :func:`~activerm_fast.data.embed`.

:func:`read_text_rows` reads one of four row forms from a ``.jsonl`` (optionally ``.gz``),
``.parquet`` or a ``datasets.save_to_disk`` folder; every row of a file has the same form:

* ``records`` — the package's JSONL records ``{"prompt", "response"[, "prompt_id", "score"
  or "gold", "model"]}``: one row each;
* ``standard`` / ``conversational`` / ``implicit`` — TRL preference rows (prompt/chosen/rejected
  as texts, as messages, or each side its own messages): one row per distinct (prompt,
  response), each preference a labelled pair (chosen row, rejected row) with label 1;
* ``completions`` — UltraFeedback-style rows, ``{"prompt" or "instruction", "completions":
  [...]}`` where a completion is a text or ``{"response"[, "overall_score" or "score",
  "model"]}``: one row per completion.

A prompt keeps its messages (role, content), so that a chat template can render every turn.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import describe
from .json_files import jsonl_records
from .preference_data import _datasets, _pyarrow

__all__ = ["FORMS", "Messages", "TextRows", "prompt_text", "read_text_rows"]

# a prompt: its (role, content) messages
Messages = tuple[tuple[str, str], ...]
# the row forms read_text_rows recognises (TextRows.form)
FORMS = ("records", "standard", "conversational", "implicit", "completions")


@dataclass(frozen=True)
class TextRows:
    """The rows of a text file, grouped by prompt.

    Attributes
    ----------
    source : Path
        The file or folder read.
    form : str
        One of :data:`FORMS`.
    prompts : list of tuple of (role, content)
        The m prompts as messages, in order of first appearance.
    prompt_names : list of str or int
        Each prompt's id: the records' ``prompt_id`` (or its text), else its position.
    prompt_of_row : numpy.ndarray
        (n,) int64, the prompt of each row.
    responses : list of str
        The n response texts.
    gold : numpy.ndarray or None
        (n,) float64 scores when the file has them on every row.
    pairs : numpy.ndarray or None
        (M, 2) int64 (chosen row, rejected row) of preference rows.
    models : list of str or None
        The model that wrote each response, when every row names one.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ultrafeedback.jsonl"
    >>> row = {"instruction": "Say hi", "completions": [
    ...     {"response": "Hi!", "overall_score": 8}, {"response": "No.", "overall_score": 2}]}
    >>> _ = path.write_text(json.dumps(row) + "\\n")
    >>> rows = read_text_rows(path)
    >>> rows.form, rows.n, rows.prompts, rows.gold.tolist()
    ('completions', 2, [(('user', 'Say hi'),)], [8.0, 2.0])
    """

    source: Path
    form: str
    prompts: list[Messages]
    prompt_names: list[Any]
    prompt_of_row: np.ndarray
    responses: list[str]
    gold: np.ndarray | None
    pairs: np.ndarray | None
    models: list[str] | None

    @property
    def n(self) -> int:
        """The number of rows."""
        return len(self.responses)


def prompt_text(messages: Messages) -> str:
    """A prompt as one text: a lone user message is its content; several messages (a system
    prompt, earlier turns) are ``role: content`` blocks separated by blank lines, as
    :func:`~activerm_fast.load_preferences` writes them.

    Examples
    --------
    >>> prompt_text((("system", "Be brief."), ("user", "Hi")))
    'system: Be brief.\\n\\nuser: Hi'
    """
    if len(messages) == 1 and messages[0][0] == "user":
        return messages[0][1]
    return "\n\n".join(f"{role}: {content}" for role, content in messages)


def read_text_rows(path: str | os.PathLike[str]) -> TextRows:
    """Read prompt/response rows of any supported form (module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.jsonl`` / ``.jsonl.gz`` / ``.parquet`` file or a ``datasets.save_to_disk``
        folder of one split.

    Returns
    -------
    TextRows
        The rows, their prompts and, where the file has them, scores and labelled pairs.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        Naming the file and line (or row) of a row that is malformed: a missing field, an
        empty text, a form different from the first row's; or naming the file, when it is not
        UTF-8 text (or, as ``.gz``, not whole gzip data).
    TypeError
        When ``path`` is not a path.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> row = {"prompt": "2+2?", "chosen": "4", "rejected": "5"}
    >>> _ = (folder / "prefs.jsonl").write_text(json.dumps(row) + "\\n")
    >>> rows = read_text_rows(folder / "prefs.jsonl")
    >>> rows.form, rows.responses, rows.pairs.tolist()
    ('standard', ['4', '5'], [[0, 1]])
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"data must be a path, got {describe(path)}")
    source = Path(path)
    builder = _Builder(source)
    for where, record in _file_rows(source):
        builder.add(where, record)
    return builder.finish()


def _file_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, record) of every row, ``where`` naming the file and line or row for errors."""
    if path.is_dir():
        datasets = _datasets("reading a datasets folder")
        table = datasets.load_from_disk(str(path))
        if not isinstance(table, datasets.Dataset):
            raise ValueError(
                f"{path} holds several splits ({', '.join(table)}): name one split's folder"
            )
        for number, record in enumerate(table):
            yield f"{path}, row {number}", record
        return
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file or folder")
    suffixes = path.suffixes[-2:]
    if path.suffix == ".parquet":
        _, parquet = _pyarrow("reading Parquet")
        for number, record in enumerate(parquet.read_table(path).to_pylist()):
            yield f"{path}, row {number}", record
        return
    if path.suffix != ".jsonl" and suffixes != [".jsonl", ".gz"]:
        raise ValueError(
            f"{path}: texts are read from a .jsonl, .jsonl.gz or .parquet file or a "
            "datasets.save_to_disk folder"
        )
    yield from jsonl_records(path, compressed=path.suffix == ".gz")


class _Builder:
    """Rows, prompts and pairs gathered record by record; the first record fixes the form."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.form: str | None = None
        self.first = ""
        self.prompt_index: dict[Any, int] = {}
        # the records' prompt ids as written (str) -> the id and the first line naming it
        self.prompt_lines: dict[str, tuple[str | int, str]] = {}
        self.prompts: list[Messages] = []
        self.prompt_of_row: list[int] = []
        self.responses: list[str] = []
        self.scores: list[float | None] = []
        self.models: list[str | None] = []
        self.row_index: dict[tuple[Messages, str], int] = {}
        self.pairs: list[tuple[int, int]] = []

    def add(self, where: str, record: Any) -> None:
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected an object, got {describe(record)}")
        form = _form(record, where)
        if self.form is None:
            self.form, self.first = form, where
        elif form != self.form:
            raise ValueError(
                f"{where}: a {form}-form row, but {self.first} is a {self.form}-form row; "
                "every row must be alike"
            )
        if form == "records":
            messages = _prompt(record.get("prompt"), f"{where}: 'prompt'")
            key = record.get("prompt_id", prompt_text(messages))
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise ValueError(f"{where}: 'prompt_id' must be text or an integer, got {key!r}")
            self._check_prompt_id(key, messages, where)
            self._row(
                key, messages, record.get("response"), name=f"{where}: 'response'", record=record
            )
        elif form == "completions":
            self._completions(record, where)
        else:
            sides = [_side(form, record, key, f"{where}: {key!r}") for key in _SIDES]
            rows = [self._distinct(messages, response) for messages, response in sides]
            if rows[0] == rows[1]:
                raise ValueError(
                    f"{where}: chosen and rejected are the same response to the same prompt"
                )
            self.pairs.append((rows[0], rows[1]))

    def _check_prompt_id(self, key: str | int, messages: Messages, where: str) -> None:
        """A ValueError for a record's prompt id that names another prompt than on its first
        row, or that reads as an id of another kind (1 and "1" are one name once written)."""
        first = self.prompt_lines.get(str(key))
        if first is None:
            self.prompt_lines[str(key)] = (key, where)
            return
        seen, line = first
        if type(seen) is not type(key):
            raise ValueError(
                f"{where}: 'prompt_id' {key!r} ({_kind(key)}) and {seen!r} ({_kind(seen)}) at "
                f"{line} are the same id once written; give every row an id of one kind"
            )
        if self.prompts[self.prompt_index[key]] != messages:
            raise ValueError(
                f"{where}: 'prompt_id' {key!r} names another prompt text at {line}; a prompt id "
                "names one prompt"
            )

    def _completions(self, record: dict[str, Any], where: str) -> None:
        field = "prompt" if "prompt" in record else "instruction"
        messages = _prompt(record.get(field), f"{where}: {field!r}")
        completions = record["completions"]
        if not isinstance(completions, list) or not completions:
            raise ValueError(
                f"{where}: 'completions' must be a non-empty list, got {describe(completions)}"
            )
        key = len(self.prompts)  # each row is its own prompt, even if a text repeats
        for number, completion in enumerate(completions):
            name = f"{where}: 'completions'[{number}]"
            if isinstance(completion, str):
                completion = {"response": completion}
            if not isinstance(completion, dict):
                raise ValueError(f"{name} must be a text or an object, got {describe(completion)}")
            self._row(
                key,
                messages,
                completion.get("response"),
                name=f"{name}['response']",
                record=completion,
            )

    def _row(
        self, key: Any, messages: Messages, response: Any, *, name: str, record: dict[str, Any]
    ) -> int:
        prompt = self.prompt_index.setdefault(key, len(self.prompts))
        if prompt == len(self.prompts):
            self.prompts.append(messages)
        self.prompt_of_row.append(prompt)
        self.responses.append(_text(response, name))
        score_key = next((k for k in _SCORE_KEYS if record.get(k) is not None), None)
        score = None if score_key is None else record[score_key]
        if score is not None and (
            isinstance(score, bool)
            or not isinstance(score, (int, float))
            or not math.isfinite(score)  # JSON's NaN and Infinity would become NaN gold
        ):
            raise ValueError(
                f"{name.rsplit(':', 1)[0]}: {score_key!r} must be a finite number, got {score!r}"
            )
        self.scores.append(None if score is None else float(score))
        model = record.get("model")
        self.models.append(model if isinstance(model, str) else None)
        return len(self.responses) - 1

    def _distinct(self, messages: Messages, response: str) -> int:
        """The row of (prompt, response), added on first sight."""
        row = self.row_index.get((messages, response))
        if row is None:
            row = self._row(messages, messages, response, name="response", record={})
            self.row_index[(messages, response)] = row
        return row

    def finish(self) -> TextRows:
        if self.form is None:
            raise ValueError(f"{self.source}: no rows")
        present = [s is not None for s in self.scores]
        if any(present) and not all(present):
            row = present.index(False)
            raise ValueError(
                f"{self.source}: row {row} has no score ({' or '.join(_SCORE_KEYS)}) while "
                "others do; give one on every row or none"
            )
        named = all(m is not None for m in self.models)
        return TextRows(
            source=self.source,
            form=self.form,
            prompts=self.prompts,
            prompt_names=list(self.prompt_index)
            if self.form == "records"
            else list(range(len(self.prompts))),
            prompt_of_row=np.array(self.prompt_of_row, np.int64),
            responses=self.responses,
            gold=np.array(self.scores, np.float64) if all(present) else None,
            pairs=np.array(self.pairs, np.int64).reshape(-1, 2) if self.pairs else None,
            models=[str(m) for m in self.models] if named else None,
        )


_SIDES = ("chosen", "rejected")
_SCORE_KEYS = ("score", "gold", "overall_score")


def _form(record: dict[str, Any], where: str) -> str:
    if "chosen" in record or "rejected" in record:
        for key in _SIDES:
            if key not in record:
                raise ValueError(f"{where}: has {_SIDES[key == 'chosen']!r} but no {key!r}")
        prompt = record.get("prompt")
        if prompt is None:
            return "implicit"
        return "standard" if isinstance(prompt, str) else "conversational"
    if "completions" in record:
        if record.get("prompt") is None and record.get("instruction") is None:
            raise ValueError(f"{where}: has 'completions' but no 'prompt' or 'instruction'")
        return "completions"
    if "response" in record:
        if "prompt" not in record:
            raise ValueError(f"{where}: has 'response' but no 'prompt'")
        return "records"
    raise ValueError(
        f"{where}: a row has 'prompt' and 'response', 'chosen' and 'rejected', or 'prompt' and "
        f"'completions'; got the keys {sorted(record)}"
    )


def _kind(key: str | int) -> str:
    return "text" if isinstance(key, str) else "an integer"


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {describe(value)}")
    if not value.strip():
        raise ValueError(f"{name} is empty: there is nothing to embed (remove the row)")
    return value


def _messages(value: Any, name: str) -> Messages:
    """(role, content) of a non-empty list of {"role": str, "content": str} messages."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"{name} must be text or a non-empty list of messages, got {value!r:.80}")
    messages = []
    for message in value:
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)):
            raise ValueError(
                f"{name} must hold messages {{'role', 'content'}}, got {message!r:.80}"
            )
        messages.append((message["role"], _text(message.get("content"), f"{name} content")))
    return tuple(messages)


def _prompt(value: Any, name: str) -> Messages:
    if isinstance(value, str):
        return (("user", _text(value, name)),)
    return _messages(value, name)


def _side(form: str, record: dict[str, Any], key: str, name: str) -> tuple[Messages, str]:
    """(prompt messages, response) of the chosen or rejected side of a preference row."""
    if form == "standard":
        return _prompt(record["prompt"], f"{name.rsplit(':', 1)[0]}: 'prompt'"), _text(
            record[key], name
        )
    messages = _messages(record[key], name)
    if form == "conversational":
        if len(messages) != 1 or messages[0][0] != "assistant":
            raise ValueError(
                f"{name} must be one assistant message, got the roles {[r for r, _ in messages]}"
            )
        prompt = _messages(record["prompt"], f"{name.rsplit(':', 1)[0]}: 'prompt'")
        return prompt, messages[0][1]
    if len(messages) < 2 or messages[-1][0] != "assistant":
        raise ValueError(
            f"{name} must be the prompt's messages then one assistant message, got the roles "
            f"{[r for r, _ in messages]}"
        )
    return messages[:-1], messages[-1][1]
