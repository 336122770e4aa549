"""Data: datasets of embedded responses, candidate pools, annotation files and preference data."""

from . import annotation, pairs, preference_data
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
    "RewardHead",
    "TextRows",
    "annotation",
    "embed",
    "embed_texts",
    "from_arrays",
    "load",
    "pairs",
    "preference_data",
    "read_text_rows",
    "spectrum_exponent",
    "synthetic",
]
