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

__all__ = [
    "ARENA_BENCH",
    "ARENA_BENCH_EXPONENT",
    "REALISTIC_SYNTHETIC",
    "SYNTHETIC_KINDS",
    "Dataset",
    "annotation",
    "embed_texts",
    "from_arrays",
    "load",
    "pairs",
    "preference_data",
    "spectrum_exponent",
    "synthetic",
]
