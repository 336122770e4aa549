"""Embed arena_bench_v1.jsonl.gz once and write the packaged ``arena-bench`` dataset.

Run from the repository root with the ``[text]`` extra installed (several minutes on two CPU
cores; no network is used):

    HF_HUB_OFFLINE=1 python scripts/embed_arena_bench.py

Each of the 300 prompts and each of the 4,461 responses is embedded once with the offline
all-MiniLM-L6-v2 (384-d, unit norm). The file stores the two halves separately as float16
and ``activerm_fast.data.load("arena-bench")`` rebuilds the row embedding
``[prompt_embedding, response_embedding]`` (768-d float32). The format is documented in
``python/activerm_fast/data/packaged/ARENA_BENCH_PROVENANCE.md``.
"""

from __future__ import annotations

import argparse
import json
from importlib import metadata
from pathlib import Path

import numpy as np
from embedding_provenance import provenance

from activerm_fast.data.dataset import ARENA_BENCH_FILE, embed_texts

SOURCE = Path("/work/shared/data/arena_bench_v1.jsonl.gz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="arena_bench_v1.jsonl.gz")
    parser.add_argument("--out", type=Path, default=ARENA_BENCH_FILE, help="npz to write")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    dataset = embed_texts(args.source, batch_size=args.batch_size, test_fraction=0.0)
    half = dataset.dim // 2
    first_row_of_prompt = np.unique(dataset.prompt_ids, return_index=True)[1]
    prompt_embeddings = dataset.embeddings[first_row_of_prompt, :half]
    response_embeddings = dataset.embeddings[:, half:]

    texts = [t.encode("utf-8") for t in [*dataset.prompts, *dataset.responses]]
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in texts])]).astype(np.int64)
    model_names, model_ids = np.unique(np.array(dataset.models), return_inverse=True)
    meta = {
        **provenance(args.source),
        "torch": metadata.version("torch"),
        "row_embedding": "concat(prompt_embeddings[prompt_ids], response_embeddings)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        prompt_embeddings=prompt_embeddings.astype(np.float16),
        response_embeddings=response_embeddings.astype(np.float16),
        prompt_ids=dataset.prompt_ids.astype(np.int16),
        gold=dataset.gold.astype(np.float32),  # integer judge scores 1..10: exact in float32
        prompt_names=np.asarray(dataset.prompt_names, dtype=str),
        model_names=model_names,
        model_ids=model_ids.astype(np.int8),
        text_utf8=np.frombuffer(b"".join(texts), dtype=np.uint8),
        text_offsets=offsets,
        meta=np.array(json.dumps(meta)),
    )
    rounding = np.abs(response_embeddings.astype(np.float16) - response_embeddings).max()
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {dataset.num_prompts} "
        f"prompts, {dataset.n} responses, {half}+{half} dims, float16 max rounding {rounding:.1e}"
    )


if __name__ == "__main__":
    main()
