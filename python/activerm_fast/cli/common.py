"""What the commands share: argument types, the design options, dataset loading, failures."""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from .. import data
from .._validation import first_line
from ..data.preference_data import is_preference_path, load_preferences
from ..selection.api import FEATURE_CHOICES, RIDGE_MODES
from ..simulation.loop import LoopConfig


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


class Failure(Exception):
    """A command-line failure whose message is complete as it is."""


def integer(text: str, least: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(f"must be a {what} integer, got {text}")
    return value


def positive(text: str) -> int:
    return integer(text, 1, "positive")


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
        raise argparse.ArgumentTypeError(f"must be a positive number or inf, got {text}")
    return value


def positive_float(text: str) -> float:
    value = number(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
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
