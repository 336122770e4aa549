"""scripts/study_defaults.py: its Defaults section, its choice of default, and its plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "study_defaults.py"
sys.path.insert(0, str(SCRIPT.parent))
import study_defaults as study  # noqa: E402  (a script, importable once scripts/ is on the path)


def fake_records(rng, strategies, level):
    """Learning curves rising to ``level`` (+ seed noise) over the study's budgets."""
    records = []
    for seed in range(study.SEEDS):
        for strategy in strategies:
            top = level + rng.normal(scale=0.005)
            for round_index in range(1, study.ROUNDS + 1):
                records.append(
                    {
                        "strategy": strategy,
                        "seed": seed,
                        "round": round_index,
                        "labels": round_index * study.PER_ROUND,
                        "spearman": top * round_index / study.ROUNDS,
                        "select_seconds": 0.5,
                        "fit_seconds": 1.0,
                    }
                )
    return records


def save(out, variant, dataset, records):
    folder = out / variant.name / dataset
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(records))


@pytest.mark.parametrize("warm_gain", [0.2, 0.0])
def test_report_moves_a_default_only_when_the_centre_is_beyond_noise(tmp_path, rng, warm_gain):
    out, docs = tmp_path / "records", tmp_path / "docs"
    docs.mkdir()
    (docs / "RESULTS.md").write_text("# Results\n\nearlier text\n")
    warm = study.BY_NAME["warm-start"]
    base = float(rng.uniform(0.2, 0.5))
    for dataset in study.DATASETS:
        centre = fake_records(rng, warm.runs(), base)
        # without a gain, the centre's own curves: fresh noise of a few seeds could by chance
        # set two equal settings apart by more than their spreads
        other = fake_records(rng, warm.runs(), base + warm_gain) if warm_gain else centre
        save(out, study.DEFAULT, dataset, centre)
        save(out, warm, dataset, other)
    study.write_section(study.report(out, docs), docs / "RESULTS.md")
    text = (docs / "RESULTS.md").read_text()
    assert text.startswith("# Results\n\nearlier text\n")
    row = next(line for line in text.splitlines() if line.startswith("| warm start |"))
    chosen = "warm-started head | no" if warm_gain else "refit from scratch (centre) | yes"
    assert row.endswith(f"{chosen} |"), row
    # the factors whose settings have not run are reported as such, and so are their chunks
    assert "| ridge | absolute, 0.001 (centre) | not run on both datasets yet | |" in text
    assert "relative-0.1/synthetic" in text
    assert (docs / "defaults_study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second report replaces its own section and keeps the rest
    study.write_section(study.report(out, docs), docs / "RESULTS.md")
    assert (docs / "RESULTS.md").read_text() == text


def test_within_noise_keeps_the_settings_whose_spread_reaches_the_best(rng):
    best = rng.normal(0.5, 0.01, size=5)
    scores = {"best": best, "close": best - 0.2 * best.std(), "far": best - 1.0}
    winner, near = study.within_noise(scores)
    assert winner == "best" and near == {"best", "close"}


def test_section_of_finds_only_the_marked_part(rng):
    body = f"{study.START}\nnumbers {rng.integers(1000)}\n{study.END}"
    assert study.section_of(f"# head\n{body}\ntail\n") == body
    assert study.section_of("# head without a section\n") == ""


def test_every_variant_differs_from_the_centre_in_its_factor_only():
    centre = study.DEFAULT.config()
    factor_fields = {
        "ridge": {"ridge", "ridge_mode"},
        "features": {"features"},
        "ensemble": {"ensemble"},
        "warm start": {"warm_start"},
        "pool": {"pool", "cross_pairs"},
    }
    for variant in study.VARIANTS[1:]:
        config = variant.config()
        changed = {k for k, v in centre.__dict__.items() if getattr(config, k) != v}
        assert changed and changed <= factor_fields[variant.factor], variant.name


def test_unknown_chunk_is_one_line_error(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "run", "default/nowhere"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: chunk must be one of")
    assert "\n" not in done.stderr.strip()
