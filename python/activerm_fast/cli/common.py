"""What the commands share: argument types, the design options, dataset loading, failures."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from .. import data
from .._launch import MAX_MEMBERS
from .._validation import first_line
from ..data.preference_data import is_preference_path, load_preferences
from ..selection.api import FEATURE_CHOICES, RIDGE_MODES
from ..simulation.loop import LoopConfig


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


class Failure(Exception):
    """A command-line failure whose message is complete as it is."""


# what bad input (arguments, files, data) raises: reported by its message alone
INPUT_ERRORS = (Failure, ValueError, TypeError, OSError)


def one_line(err: BaseException) -> str:
    """``err``'s message on one line (its type's name when it has none)."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def report(err: Exception, *, quiet: bool = False) -> int:
    """Print ``err`` as the command's one line on stderr (nothing when ``quiet``) and return
    the exit status, 2. Bad input is its message alone; anything else is a bug, reported as an
    internal error, or raised when ``ACTIVERM_FAST_TRACEBACK`` is set.

    Examples
    --------
    >>> import contextlib, io
    >>> stderr = io.StringIO()
    >>> with contextlib.redirect_stderr(stderr):
    ...     report(ValueError("k must be positive,\\ngot 0"))
    2
    >>> stderr.getvalue()
    'activerm-fast: error: k must be positive, got 0\\n'
    """
    if isinstance(err, INPUT_ERRORS):
        line = f"activerm-fast: error: {one_line(err)}"
    elif os.environ.get("ACTIVERM_FAST_TRACEBACK"):
        raise err
    else:  # a bug rather than bad input: one line too, unless asked
        line = (
            f"activerm-fast: internal error: {type(err).__name__}: {one_line(err)} "
            "(set ACTIVERM_FAST_TRACEBACK=1 for the traceback)"
        )
    if not quiet:
        print(line, file=sys.stderr)
    return 2


def refuse_given(args: argparse.Namespace, flags: Sequence[str], why: str) -> None:
    """A Failure for the first of ``flags`` the command line gave (a value other than its
    default) where the rest of the command has no use for it, ``why`` saying so after the
    flag: an option silently ignored would look obeyed.

    Examples
    --------
    >>> parser = Parser(prog="demo")
    >>> _ = parser.add_argument("--name", default="x")
    >>> parser.set_defaults(command_parser=parser)
    >>> refuse_given(parser.parse_args([]), ["--name"], "is not used here")
    >>> try:
    ...     refuse_given(parser.parse_args(["--name", "y"]), ["--name"], "is not used here")
    ... except Failure as err:
    ...     print(err)
    --name is not used here
    """
    parser: argparse.ArgumentParser = args.command_parser
    for flag in flags:
        dest = flag.lstrip("-").replace("-", "_")
        if getattr(args, dest) != parser.get_default(dest):
            raise Failure(f"{flag} {why}")


def prepare_outputs(
    args: argparse.Namespace,
    written: Sequence[str],
    read: Sequence[str] = (),
    *,
    files: Sequence[str] = (),
) -> None:
    """Check the ``written`` file arguments before any work, and make their folders.

    A written file that names the same file or folder as another file argument (``written``
    or ``read``), existing or yet to be made, is refused: writing it would destroy the other
    (labels included). So is an empty path, one of ``files`` (the written arguments that are
    files, never folders) naming an existing folder, and a written file whose folder cannot
    be made (a file stands in its path) or written in, so that a fit or a selection never
    ends in a write that fails. The folders of the others are made (``mkdir -p``). The
    arguments are given as the command line names them (``"--out"``, or ``"source"`` for a
    positional one).

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "labelled.jsonl")
    >>> open(path, "w").close()
    >>> try:
    ...     prepare_outputs(argparse.Namespace(out=path, labelled=path), ["--out"], ["--labelled"])
    ... except Failure as err:
    ...     print(str(err).replace(folder, "FOLDER"))
    --out and --labelled name the same file, FOLDER/labelled.jsonl: writing --out would overwrite it
    >>> batch = os.path.join(folder, "new", "batch.jsonl")
    >>> prepare_outputs(argparse.Namespace(out=batch), ["--out"])
    >>> os.path.isdir(os.path.dirname(batch))
    True
    """

    def value(flag: str) -> str | None:
        given = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        return None if given is None else os.fspath(given)

    def same(a: str, b: str) -> bool:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)  # hard links and symbolic ones too
        return os.path.realpath(a) == os.path.realpath(b)

    flags = [*written, *read]
    for at, flag in enumerate(written):
        out = value(flag)
        if out is None:
            continue
        if not out:
            raise Failure(f"{flag} is empty: name the file to write")
        if flag in files and os.path.isdir(out):
            raise Failure(f"{flag} {out} is a folder: name a file in it")
        for other in flags[at + 1 :]:
            given = value(other)
            if given and same(out, given):
                raise Failure(
                    f"{flag} and {other} name the same file, {out}: writing {flag} "
                    "would overwrite it"
                )
    folders = {flag: Path(out).absolute().parent for flag in written if (out := value(flag))}
    for flag, folder in folders.items():
        standing = next(p for p in (folder, *folder.parents) if p.exists())
        if not standing.is_dir():
            raise Failure(f"{flag} {value(flag)}: {standing} is a file, not a folder")
        if not os.access(standing, os.W_OK | os.X_OK):
            raise Failure(f"{flag} {value(flag)}: no permission to write in {standing}")
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)


def shown(text: str) -> str:
    """A flag's value as an error shows it: quoted when blank or padded, or it would vanish."""
    return text if text and text.strip() == text else repr(text)


def integer(text: str, least: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(f"must be a {what} integer, got {shown(text)}")
    return value


def positive(text: str) -> int:
    return integer(text, 1, "positive")


def ensemble_size(text: str) -> int:
    """A member count a selection takes: 1 .. MAX_MEMBERS (refused before any fit)."""
    value = integer(text, 1, "positive")
    if value > MAX_MEMBERS:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_MEMBERS}, the members a selection takes, got {shown(text)}"
        )
    return value


def non_negative(text: str) -> int:
    return integer(text, 0, "non-negative")


def number(text: str) -> float:
    """The float ``text`` spells, NaN (refused by every caller) when it spells none."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def positive_or_inf(text: str) -> float:
    value = number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number or inf, got {shown(text)}")
    return value


def positive_float(text: str) -> float:
    value = number(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {shown(text)}")
    return value


# --lazy's words and the lazy= they mean
LAZY_CHOICES: dict[str, bool | str] = {"auto": "auto", "true": True, "false": False}


def design_arguments(command: argparse.ArgumentParser) -> None:
    """The D-optimal design's options, the same for simulate and select."""
    command.add_argument(
        "--ridge", type=positive_float, default=LoopConfig.ridge, help="lambda of F0 = lambda I"
    )
    command.add_argument(
        "--ridge-mode",
        choices=RIDGE_MODES,
        default=LoopConfig.ridge_mode,
        help="relative: lambda = ridge x tr(F_labelled)/d, following the features' scale",
    )
    command.add_argument(
        "--features",
        choices=FEATURE_CHOICES,
        default=LoopConfig.features,
        help="what the design sees: the reward model's last hidden layer or the embeddings",
    )
    command.add_argument(
        "--per-prompt",
        type=positive,
        default=LoopConfig.per_prompt,
        metavar="M",
        help="at most M pairs per prompt in a batch, for every strategy (default: no limit)",
    )


def load_dataset(name: str) -> data.Dataset:
    if name == "synthetic":
        return data.synthetic(**data.REALISTIC_SYNTHETIC)
    if name == "synthetic-isotropic":
        return data.synthetic()
    if is_preference_path(name):
        with optional_packages():
            return load_preferences(name)
    return data.load(name)


@contextmanager
def optional_packages() -> Iterator[None]:
    """A missing optional package (datasets, pyarrow, sentence-transformers) is the user's to
    install: one line naming the extra, like any bad input."""
    try:
        yield
    except ImportError as err:
        raise Failure(first_line(err)) from err
