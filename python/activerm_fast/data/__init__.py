"""Data: datasets of embedded responses, candidate pools, annotation files and tools (Label
Studio, Argilla) and preference data."""

from . import annotation, annotation_tools, argilla, label_studio, pairs, preference_data
from .annotation_tools import PullSummary, pair_id
from .argilla import pull_argilla, write_argilla
from .dataset import (
    ARENA_BENCH,
    ARENA_BENCH_EXPONENT,
    REALISTIC_SYNTHETIC,
    SYNTHETIC_KINDS,
    Dataset,
    embed_texts,
    from_arrays,
    load,
    spectrum_exponent,
    synthetic,
)
from .label_studio import (
    PushSummary,
    pull_label_studio,
    push_label_studio,
    write_label_studio_tasks,
)
from .model_features import EmbedSummary, embed
from .reward_head import RewardHead
from .text_records import TextRows, read_text_rows

__all__ = [
    "ARENA_BENCH",
    "ARENA_BENCH_EXPONENT",
    "REALISTIC_SYNTHETIC",
    "SYNTHETIC_KINDS",
    "Dataset",
    "EmbedSummary",
    "PullSummary",
    "PushSummary",
    "RewardHead",
    "TextRows",
    "annotation",
    "annotation_tools",
    "argilla",
    "embed",
    "embed_texts",
    "from_arrays",
    "label_studio",
    "load",
    "pair_id",
    "pairs",
    "preference_data",
    "pull_argilla",
    "pull_label_studio",
    "push_label_studio",
    "read_text_rows",
    "spectrum_exponent",
    "synthetic",
    "write_argilla",
    "write_label_studio_tasks",
]
