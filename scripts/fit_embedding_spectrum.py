"""Fit the power-law exponent of arena-bench's embedding spectrum (lambda_r ~ r^-alpha).

    python scripts/fit_embedding_spectrum.py [--variance 0.9]

Prints alpha for the dataset's rows ([prompt, response] embeddings), for the response and the
prompt halves alone, and for the realistic synthetic data generated with the fitted value, so
the generator's default (``data.ARENA_BENCH_EXPONENT``) can be checked against the data. Then,
for both, where the reward that within-prompt rankings depend on lies: the share of a ridge
fit's signal (coefficient^2 x variance, per principal direction) of the gold, less each
prompt's mean, in the top eighth of the directions, beside their share of the variance.
"""

from __future__ import annotations

import argparse

import numpy as np

from activerm_fast import data


def top_shares(dataset: data.Dataset) -> tuple[float, float]:
    """(share of the within-prompt reward's linear signal, share of the variance) held by the
    top eighth of the principal directions of the embeddings."""
    x = dataset.embeddings.astype(np.float64)
    x -= x.mean(axis=0)
    assert dataset.gold is not None
    counts = np.bincount(dataset.prompt_ids)
    prompt_gold = np.bincount(dataset.prompt_ids, weights=dataset.gold) / counts
    gold = dataset.gold - prompt_gold[dataset.prompt_ids]
    prompt_rows = np.zeros((dataset.num_prompts, dataset.dim))
    np.add.at(prompt_rows, dataset.prompt_ids, x)
    within = x - (prompt_rows / counts[:, None])[dataset.prompt_ids]
    _, singular, directions = np.linalg.svd(x, full_matrices=False)
    z = within @ directions.T
    ridge = 1e-3 * len(gold)  # a little shrinkage so near-empty directions get no weight
    w = np.linalg.solve(z.T @ z + ridge * np.eye(z.shape[1]), z.T @ gold)
    signal = w**2 * (z**2).mean(axis=0)
    top = dataset.dim // 8
    variance = singular**2
    return float(signal[:top].sum() / signal.sum()), float(variance[:top].sum() / variance.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variance", type=float, default=0.9, help="share of the variance the fit covers"
    )
    args = parser.parse_args()
    arena = data.load("arena-bench")
    half = arena.dim // 2
    parts = {
        "rows [prompt, response]": arena.embeddings,
        "response embeddings": arena.embeddings[:, half:],
        "prompt embeddings (one per prompt)": np.unique(arena.embeddings[:, :half], axis=0),
    }
    for name, embeddings in parts.items():
        alpha = data.spectrum_exponent(embeddings, args.variance)
        rows, columns = embeddings.shape
        print(f"arena-bench {name}: alpha = {alpha:.3f} ({rows} x {columns})")
    synthetic = data.synthetic(seed=0, **data.REALISTIC_SYNTHETIC)
    alpha = data.spectrum_exponent(synthetic.embeddings, args.variance)
    print(
        f"synthetic (kind='realistic', alpha requested {data.ARENA_BENCH_EXPONENT}): "
        f"alpha = {alpha:.3f} ({synthetic.n} x {synthetic.dim})"
    )
    for name, dataset in {"arena-bench": arena, "synthetic": synthetic}.items():
        signal, variance = top_shares(dataset)
        print(
            f"{name}: the top eighth of the directions holds {variance:.0%} of the variance "
            f"and {signal:.0%} of the within-prompt reward's linear signal"
        )


if __name__ == "__main__":
    main()
