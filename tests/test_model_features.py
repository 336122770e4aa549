"""activerm_fast.data.embed against plain one-record-at-a-time forward passes of tiny random
Hugging Face models built here (Llama, Qwen2, GPT-2; 2 layers, hidden size 32) with a
word-level tokenizer trained on the tests' own words: nothing is downloaded.

The distributed check runs this file as two gloo processes (tests/gloo.py's ``python
tests/test_model_features.py RANK WORLD PORT OUT MODEL DATA NPZ``); the kill-and-resume check runs
an embedding in a subprocess that SIGKILLs itself while writing a shard.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import gloo
import numpy as np
import pytest
import torch

import activerm_fast as arm
from activerm_fast.data import RewardHead, embed, feature_store, model_features
from activerm_fast.data.text_records import FORMS, prompt_text, read_text_rows

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")


WORDS = (
    "the cat sat on a mat dog ran far away hello world how are you fine thanks what is two "
    "plus four six answer question good bad very long short reply again and yes no maybe"
).split()
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
SPECIALS = ["[PAD]", "[UNK]", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]
TIMEOUT_S = 240


def make_tokenizer(folder: Path, *, padding_side: str = "right", template: bool = True):
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    trainer = tokenizers.trainers.WordLevelTrainer(special_tokens=SPECIALS)
    tok.train_from_iterator([" ".join(WORDS), "<|user|> <|assistant|> <|system|>"], trainer)
    # the concatenation without a template starts with BOS, as Llama tokenizers do
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="<s>",
        eos_token="</s>",
        padding_side=padding_side,
    )
    if template:
        fast.chat_template = TEMPLATE
    fast.save_pretrained(folder)
    return fast


def make_model(folder: Path, kind: str = "llama", *, padding_side: str = "right", **options):
    """A tiny random model of ``kind`` and its tokenizer saved in ``folder``."""
    tokenizer = make_tokenizer(
        folder, padding_side=padding_side, template=options.pop("template", True)
    )
    common = {"vocab_size": tokenizer.vocab_size, "pad_token_id": tokenizer.pad_token_id}
    common["num_labels"] = options.pop("num_labels", 1)
    torch.manual_seed(0)
    if kind == "gpt2":
        config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, **common)
        model = transformers.GPT2ForSequenceClassification(config)
    else:
        small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
        small |= {"num_attention_heads": 4, "num_key_value_heads": 2, **common}
        if kind == "qwen2":
            model = transformers.Qwen2ForSequenceClassification(transformers.Qwen2Config(**small))
        elif kind == "llama-lm":
            model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**small))
        else:
            config = transformers.LlamaConfig(**small)
            model = transformers.LlamaForSequenceClassification(config)
    model.save_pretrained(folder)
    # the tokenizer as the folder gives it back (for Qwen2, transformers' own Qwen2Tokenizer)
    return model.eval(), transformers.AutoTokenizer.from_pretrained(folder)


def sentence(rng: np.random.Generator, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS, rng.integers(low, high)))


def write_records(path: Path, prompts: int = 6, per_prompt: int = 3, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    records = []
    for p in range(prompts):
        prompt = sentence(rng, 2, 9)
        for r in range(per_prompt):
            records.append(
                {
                    "prompt_id": f"q{p}",
                    "prompt": prompt,
                    "response": sentence(rng, 1, 20),
                    "score": float(rng.normal()),
                    "model": f"m{r}",
                }
            )
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def reference(model, tokenizer, prompt, response, *, template=True, layer=-1, per_token=False):
    """One record alone, unpadded: a reward model's hidden state at its last token (at every
    token with ``per_token``) and its logits; a language model's hidden states of ``layer``."""
    if template:
        chat = [*prompt, {"role": "assistant", "content": response}]
        ids = tokenizer(
            tokenizer.apply_chat_template(chat, tokenize=False), add_special_tokens=False
        )
    else:
        ids = tokenizer(f"{prompt[0]['content']}\n\n{response}")
    x = torch.tensor([ids["input_ids"]])
    with torch.no_grad():
        if hasattr(model, "score"):
            hidden = model.base_model(x).last_hidden_state[0]
            return (hidden if per_token else hidden[-1]).numpy(), model(x).logits[0].numpy()
        states = model.model(x, output_hidden_states=True).hidden_states
        return states[layer][0].numpy(), None


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# ---- features and rewards ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_features_and_rewards_equal_one_record_at_a_time(tmp_path, kind, side):
    model, tokenizer = make_model(tmp_path / "rm", kind, padding_side=side)
    records = write_records(tmp_path / "rows.jsonl")
    out = tmp_path / "out.npz"
    summary = embed(
        tmp_path / "rm", tmp_path / "rows.jsonl", out, batch_size=4, shard_rows=7, progress=False
    )
    assert summary.rows == len(records) and summary.has_head and summary.chat_template
    assert summary.truncated == 0 and summary.dim == 32
    dataset = arm.load(out)
    with np.load(out) as z:
        rewards, weight, bias = z["model_rewards"], z["head_weight"], z["head_bias"]
    assert rewards.shape == (len(records),) and weight.shape == (1, 32)
    for row, record in enumerate(records):
        hidden, logits = reference(model, tokenizer, user(record["prompt"]), record["response"])
        np.testing.assert_allclose(dataset.embeddings[row], hidden, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(rewards[row], logits[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        dataset.embeddings @ weight[0] + bias[0], rewards, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(RewardHead.load(out).rewards(dataset.embeddings), rewards, atol=1e-5)
    # the records' own columns and texts travel with the features
    np.testing.assert_allclose(dataset.gold, [r["score"] for r in records])
    assert dataset.num_prompts == 6 and list(dataset.prompt_names) == [f"q{p}" for p in range(6)]
    assert dataset.responses == [r["response"] for r in records]
    assert dataset.prompts[1] == records[3]["prompt"] and dataset.models[:3] == ["m0", "m1", "m2"]


def test_concatenation_without_chat_template_and_float16(tmp_path):
    model, tokenizer = make_model(tmp_path / "rm", template=False)
    records = write_records(tmp_path / "rows.jsonl", prompts=3)
    out = tmp_path / "out.npz"
    summary = embed(
        tmp_path / "rm", tmp_path / "rows.jsonl", out, output_dtype="float16", progress=False
    )
    assert not summary.chat_template
    with np.load(out) as z:
        assert z["embeddings"].dtype == np.float16
        features, rewards = z["embeddings"], z["model_rewards"]
    for row, record in enumerate(records):
        hidden, logits = reference(
            model, tokenizer, user(record["prompt"]), record["response"], template=False
        )
        np.testing.assert_allclose(features[row], hidden, rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(rewards[row], logits[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("side", ["right", "left"])
def test_base_language_model_last_mean_and_layer(tmp_path, side):
    model, tokenizer = make_model(tmp_path / "lm", "llama-lm", padding_side=side)
    records = write_records(tmp_path / "rows.jsonl", prompts=4)
    runs = {"last": ("last", -1), "mean": ("mean", -1), "layer1": ("last", 1)}
    got = {}
    for name, (pooling, layer) in runs.items():
        out = tmp_path / f"{name}.npz"
        summary = embed(
            tmp_path / "lm",
            tmp_path / "rows.jsonl",
            out,
            pooling=pooling,
            layer=layer,
            batch_size=5,
            progress=False,
        )
        assert not summary.has_head
        got[name] = arm.load(out).embeddings
    with pytest.raises(ValueError, match="holds no score head"):
        RewardHead.load(tmp_path / "last.npz")
    for row, record in enumerate(records):
        last, _ = reference(model, tokenizer, user(record["prompt"]), record["response"])
        layer1, _ = reference(model, tokenizer, user(record["prompt"]), record["response"], layer=1)
        np.testing.assert_allclose(got["last"][row], last[-1], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got["mean"][row], last.mean(0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got["layer1"][row], layer1[-1], rtol=1e-4, atol=1e-5)


def test_several_outputs_and_no_rewards_from_a_reward_model(tmp_path):
    model, tokenizer = make_model(tmp_path / "rm", num_labels=3)
    write_records(tmp_path / "rows.jsonl", prompts=2)
    embed(tmp_path / "rm", tmp_path / "rows.jsonl", tmp_path / "a.npz", progress=False)
    with np.load(tmp_path / "a.npz") as z:
        assert z["model_rewards"].shape == (6, 3) and z["head_weight"].shape == (3, 32)
        features, rewards = z["embeddings"], z["model_rewards"]
    head = RewardHead.load(tmp_path / "a.npz", output=2)
    np.testing.assert_allclose(head.rewards(features), rewards[:, 2], atol=1e-5)
    summary = embed(
        tmp_path / "rm", tmp_path / "rows.jsonl", tmp_path / "b.npz", rewards=False, progress=False
    )
    assert not summary.has_head
    np.testing.assert_array_equal(arm.load(tmp_path / "b.npz").embeddings, features)
    # another pooling than the head's: the base model's hidden states, no head
    summary = embed(
        tmp_path / "rm", tmp_path / "rows.jsonl", tmp_path / "c.npz", pooling="mean", progress=False
    )
    assert not summary.has_head
    record = read_text_rows(tmp_path / "rows.jsonl")
    prompt = [{"role": "user", "content": prompt_text(record.prompts[0])}]
    hidden, _ = reference(model, tokenizer, prompt, record.responses[0], per_token=True)
    np.testing.assert_allclose(
        arm.load(tmp_path / "c.npz").embeddings[0], hidden.mean(0), rtol=1e-4, atol=1e-5
    )


# ---- inputs -----------------------------------------------------------------------------------


def test_preference_and_completion_rows(tmp_path):
    model, tokenizer = make_model(tmp_path / "rm")
    system = [{"role": "system", "content": "be good"}, *user("what is two plus four")]
    forms = {
        "standard": [
            {"prompt": "what is two plus four", "chosen": "six", "rejected": "two"},
            {"prompt": "what is two plus four", "chosen": "six", "rejected": "four"},
        ],
        "conversational": [
            {
                "prompt": system,
                "chosen": [{"role": "assistant", "content": "six"}],
                "rejected": [{"role": "assistant", "content": "no"}],
            },
        ],
        "implicit": [
            {
                "chosen": [*system, {"role": "assistant", "content": "six"}],
                "rejected": [*user("hello"), {"role": "assistant", "content": "fine thanks"}],
            },
        ],
        "completions": [
            {
                "instruction": "hello",
                "completions": [
                    {"response": "fine thanks", "overall_score": 4.5, "model": "a"},
                    {"response": "bad", "overall_score": 1.0, "model": "b"},
                ],
            },
            {
                "prompt": "hello",
                "completions": [{"response": "yes", "overall_score": 2, "model": "a"}],
            },
        ],
    }
    for form, rows in forms.items():
        path = tmp_path / f"{form}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        out = tmp_path / f"{form}.npz"
        embed(tmp_path / "rm", path, out, progress=False)
        dataset = arm.load(out)
        read = read_text_rows(path)
        assert read.form == form and form in FORMS and dataset.n == read.n
        if form == "completions":
            np.testing.assert_allclose(dataset.gold, [4.5, 1.0, 2.0])
            assert dataset.num_prompts == 2 and dataset.pairs is None
        else:
            assert dataset.gold is None and (dataset.labels == 1).all()
        if form == "standard":
            assert dataset.responses == ["six", "two", "four"]
            assert dataset.pairs.tolist() == [[0, 1], [0, 2]] and dataset.num_prompts == 1
        if form in ("conversational", "implicit"):  # every turn through the chat template
            hidden, _ = reference(model, tokenizer, system, "six")
            np.testing.assert_allclose(dataset.embeddings[0], hidden, rtol=1e-4, atol=1e-5)
            assert dataset.prompts[0] == "system: be good\n\nuser: what is two plus four"


def test_datasets_folder_parquet_and_gzipped_jsonl_read_alike(tmp_path):
    datasets = pytest.importorskip("datasets")
    make_model(tmp_path / "rm")
    rows = [
        {"prompt": "hello", "chosen": "fine thanks", "rejected": "bad"},
        {"prompt": "how are you", "chosen": "good", "rejected": "bad"},
    ]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "prefs"))
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "prefs.parquet"))
    with gzip.open(tmp_path / "prefs.jsonl.gz", "wt") as out:
        out.write("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    embed(tmp_path / "rm", tmp_path / "prefs.jsonl", tmp_path / "plain.npz", progress=False)
    plain = arm.load(tmp_path / "plain.npz")
    assert plain.pairs.tolist() == [[0, 1], [2, 3]] and plain.n == 4
    for source in ("prefs", "prefs.parquet", "prefs.jsonl.gz"):
        out = tmp_path / f"{source.replace('.', '-')}.npz"
        embed(tmp_path / "rm", tmp_path / source, out, progress=False)
        other = arm.load(out)
        np.testing.assert_array_equal(other.embeddings, plain.embeddings)
        assert other.pairs.tolist() == plain.pairs.tolist()
        assert other.responses == plain.responses


def test_truncation_is_counted_and_a_prompt_longer_than_max_length_refused(tmp_path):
    make_model(tmp_path / "rm")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"prompt": "hello", "response": " ".join(["cat"] * 30)})
        + "\n"
        + json.dumps({"prompt": "hello", "response": "yes"})
        + "\n"
    )
    with pytest.warns(UserWarning, match="1 of 2 rows were longer than max_length=12"):
        summary = embed(tmp_path / "rm", rows, tmp_path / "a.npz", max_length=12, progress=False)
    assert summary.truncated == 1 and summary.tokens <= 24
    assert "1 rows truncated to 12 tokens" in summary.describe()
    rows.write_text(json.dumps({"prompt": " ".join(["dog"] * 20), "response": "yes"}) + "\n")
    with pytest.raises(
        ValueError, match=r"rows.jsonl: max_length=8 is shorter than the prompt of row 0"
    ):
        embed(tmp_path / "rm", rows, tmp_path / "b.npz", max_length=8, progress=False)
    assert not (tmp_path / "b.npz").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"prompt": "hello", "response": "  "}, r"line 1: 'response' is empty"),
        ({"prompt": "hello"}, r"line 1: a row has 'prompt' and 'response'"),
        ({"response": "yes"}, r"line 1: has 'response' but no 'prompt'"),
        ({"prompt": "hello", "chosen": "yes"}, r"line 1: has 'chosen' but no 'rejected'"),
        ({"prompt": "", "chosen": "yes", "rejected": "no"}, r"line 1: 'prompt' is empty"),
        ({"prompt": "hi", "completions": []}, r"'completions' must be a non-empty list"),
        ({"prompt": "hi", "chosen": "yes", "rejected": "yes"}, "the same response"),
    ],
)
def test_bad_records_name_the_line_and_field(tmp_path, content, message):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(content) + "\n")
    with pytest.raises(ValueError, match=message):
        read_text_rows(path)


@pytest.mark.parametrize(
    ("first_id", "second", "message"),
    [
        (
            "q",
            {"prompt": "hello", "response": "y", "prompt_id": "q"},
            r"rows.jsonl, line 2: 'prompt_id' 'q' names another prompt text at .*rows.jsonl, "
            r"line 1; a prompt id names one prompt$",
        ),
        (
            "1",
            {"prompt": "hi", "response": "y", "prompt_id": 1},
            r"line 2: 'prompt_id' 1 \(an integer\) and '1' \(text\) at .*line 1 are the same id",
        ),
        ("hi", {"prompt": "hi", "response": "y"}, None),  # a prompt's text is its id
    ],
)
def test_a_prompt_id_names_one_prompt_of_one_kind(tmp_path, first_id, second, message):
    """A repeated prompt_id with another prompt text, or 1 beside "1", is refused at its line:
    embed kept the first prompt's text for both, or wrote ids its own loader refuses."""
    path = tmp_path / "rows.jsonl"
    first = {"prompt": "hi", "response": "x", "prompt_id": first_id}
    path.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
    if message is None:
        rows = read_text_rows(path)
        assert rows.prompt_of_row.tolist() == [0, 0] and rows.prompt_names == ["hi"]
        return
    with pytest.raises(ValueError, match=message):
        read_text_rows(path)


def test_a_damaged_score_head_file_is_a_value_error_naming_it(tmp_path):
    """An empty or cut-short .npz escaped as EOFError or BadZipFile, a weight of strings as
    torch's TypeError naming no field."""
    whole = tmp_path / "head.npz"
    np.savez(whole, head_weight=np.ones((1, 3), np.float32), head_bias=np.zeros(1))
    for name, content in (("empty", b""), ("cut", whole.read_bytes()[:100])):
        (tmp_path / f"{name}.npz").write_bytes(content)
        with pytest.raises(ValueError, match=rf"^.*{name}\.npz: cannot read the score head \("):
            RewardHead.load(tmp_path / f"{name}.npz")
    np.savez(tmp_path / "text.npz", head_weight=np.array([["a", "b"]]), head_bias=np.zeros(1))
    with pytest.raises(
        TypeError, match=r"text\.npz: head_weight must hold real numbers, got dtype"
    ):
        RewardHead.load(tmp_path / "text.npz")
    assert RewardHead.load(whole).input_dim == 3


def test_bad_model_folders_and_outputs(tmp_path):
    make_model(tmp_path / "rm")
    make_model(tmp_path / "lm", "llama-lm")
    write_records(tmp_path / "rows.jsonl", prompts=1)
    data, out = tmp_path / "rows.jsonl", tmp_path / "out.npz"
    with pytest.raises(FileNotFoundError, match="no-such-model: no such folder"):
        embed(tmp_path / "no-such-model", data, out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no config.json"):
        embed(tmp_path / "empty", data, out)
    with pytest.raises(ValueError, match=r"lm: \['LlamaForCausalLM'\] has no score head"):
        embed(tmp_path / "lm", data, out, rewards=True)
    with pytest.raises(ValueError, match="layer must be -1 and pooling 'last'"):
        embed(tmp_path / "rm", data, out, rewards=True, pooling="mean")
    for layer in (3, -4, 100):  # 2 layers: hidden states -3..2
        with pytest.raises(ValueError, match=rf"^layer must be in -3..2 for model .* got {layer}$"):
            embed(tmp_path / "lm", data, out, layer=layer)
    (tmp_path / "rm" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"rm/config.json: cannot read it"):
        embed(tmp_path / "rm", data, out)
    make_model(tmp_path / "rm")
    weights = tmp_path / "rm" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="rm: cannot load the weights"):
        embed(tmp_path / "rm", data, out)
    with pytest.raises(ValueError, match="out must name a .npz file"):
        embed(tmp_path / "lm", data, tmp_path / "out.txt")
    with pytest.raises(FileNotFoundError, match="missing.jsonl: no such file"):
        embed(tmp_path / "lm", tmp_path / "missing.jsonl", out, progress=False)
    out.write_bytes(b"")
    with pytest.raises(FileExistsError, match="out.npz exists already"):
        embed(tmp_path / "lm", data, out)
    with pytest.raises(ValueError, match="batch_size must be"):
        embed(tmp_path / "lm", data, tmp_path / "x.npz", batch_size=0)
    for device, message in [
        ("tpu", "device must name a device such as 'cpu', 'cuda' or 'cuda:1', got 'tpu'"),
        ("mps", "device is mps; only CPU and CUDA devices are supported"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            embed(tmp_path / "lm", data, tmp_path / "x.npz", device=device)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device is cuda:1, but torch .* sees no GPU here"):
            embed(tmp_path / "lm", data, tmp_path / "x.npz", device="cuda:1")


# ---- resuming, memory, ranks ------------------------------------------------------------------


KILLED_RUN = """
import os, signal, sys
from activerm_fast.data import feature_store, model_features
written = 0
whole = feature_store.write_npz
def dying(path, arrays):
    global written
    written += 1
    if written == 3:  # half of the third shard on disk under its temporary name, then killed
        path.with_name(path.name + ".tmp").write_bytes(b"PK half a shard")
        os.kill(os.getpid(), signal.SIGKILL)
    whole(path, arrays)
feature_store.write_npz = dying
model_features.embed(sys.argv[1], sys.argv[2], sys.argv[3], shard_rows=4, batch_size=3,
                     progress=False)
"""


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    make_model(tmp_path / "rm")
    write_records(tmp_path / "rows.jsonl", prompts=6)  # 18 rows: 5 shards of 4
    whole = tmp_path / "whole.npz"
    embed(
        tmp_path / "rm", tmp_path / "rows.jsonl", whole, shard_rows=4, batch_size=3, progress=False
    )
    out = tmp_path / "resumed.npz"
    script = tmp_path / "killed.py"
    script.write_text(KILLED_RUN)
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "rm"), str(tmp_path / "rows.jsonl"), str(out)],
        timeout=TIMEOUT_S,
    )
    assert run.returncode == -signal.SIGKILL
    parts = tmp_path / "resumed.npz.parts"
    assert sorted(p.name for p in parts.iterdir()) == [
        "meta.json",
        "shard-000000.npz",
        "shard-000001.npz",
        "shard-000002.npz.tmp",
    ]
    with pytest.raises(FileNotFoundError):  # nothing half-written loads
        arm.load(out)
    with pytest.raises(ValueError, match="other settings \\(shard_rows"):
        embed(tmp_path / "rm", tmp_path / "rows.jsonl", out, shard_rows=5, progress=False)
    summary = embed(
        tmp_path / "rm", tmp_path / "rows.jsonl", out, shard_rows=4, batch_size=2, progress=False
    )
    assert summary.resumed_rows == 8 and not parts.exists()
    assert_same_output(whole, out)


class Stopped(Exception):
    """A run stopped after its first shard."""


def test_a_resume_on_another_model_or_data_is_refused(tmp_path, monkeypatch):
    """A checkpoint of the same shape (new weights, same file sizes) or a text edited to the
    same length resumed before, mixing two inputs in one file; the inputs are now digested.
    Back on the first inputs the run resumes to the uninterrupted result."""
    make_model(tmp_path / "rm")
    records = write_records(tmp_path / "rows.jsonl", prompts=4)  # 12 rows: 3 shards of 4
    whole, out = tmp_path / "whole.npz", tmp_path / "out.npz"
    embed(tmp_path / "rm", tmp_path / "rows.jsonl", whole, shard_rows=4, progress=False)
    write = feature_store.ShardStore.write

    def one_shard(self, shard, arrays):
        write(self, shard, arrays)
        raise Stopped

    with monkeypatch.context() as patch:
        patch.setattr(feature_store.ShardStore, "write", one_shard)
        with pytest.raises(Stopped):
            embed(tmp_path / "rm", tmp_path / "rows.jsonl", out, shard_rows=4, progress=False)
    weights = tmp_path / "rm" / "model.safetensors"
    size = weights.stat().st_size
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    model.save_pretrained(tmp_path / "rm")
    assert weights.stat().st_size == size
    with pytest.raises(ValueError, match=r"other settings \(model_files: model.safetensors chan"):
        embed(tmp_path / "rm", tmp_path / "rows.jsonl", out, shard_rows=4, progress=False)
    make_model(tmp_path / "rm")  # the first weights again
    edited = [dict(r) for r in records]
    edited[0]["response"] = edited[0]["response"][::-1]  # as many bytes, another text
    assert edited[0]["response"] != records[0]["response"]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in edited))
    with pytest.raises(ValueError, match=r"other settings \(data_digest: '[0-9a-f]{35}\.\.\.' "):
        embed(tmp_path / "rm", tmp_path / "rows.jsonl", out, shard_rows=4, progress=False)
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = embed(tmp_path / "rm", tmp_path / "rows.jsonl", out, shard_rows=4, progress=False)
    assert summary.resumed_rows == 4
    assert_same_output(whole, out)


def test_a_run_refused_before_its_first_shard_leaves_nothing_to_resume(tmp_path):
    """max_length shorter than a prompt is refused once the folder is made; the corrected
    command then runs (it was refused as "a run with other settings" there, with no shard)."""
    make_model(tmp_path / "rm")
    write_records(tmp_path / "rows.jsonl", prompts=2)
    out = tmp_path / "out.npz"
    with pytest.raises(ValueError, match="max_length=3 is shorter than the prompt of row 0"):
        embed(tmp_path / "rm", tmp_path / "rows.jsonl", out, max_length=3, progress=False)
    assert (tmp_path / "out.npz.parts" / "meta.json").is_file()
    assert embed(tmp_path / "rm", tmp_path / "rows.jsonl", out, progress=False).rows == 6
    assert not (tmp_path / "out.npz.parts").exists()


def test_max_length_beyond_the_models_positions_is_refused(tmp_path):
    make_model(tmp_path / "gpt2", "gpt2")  # 128 positions
    write_records(tmp_path / "rows.jsonl", prompts=1)
    with pytest.raises(
        ValueError,
        match=r"^max_length=1000 is more than the model's 128 positions "
        r"\(max_position_embeddings\); pass at most that$",
    ):
        embed(tmp_path / "gpt2", tmp_path / "rows.jsonl", tmp_path / "o.npz", max_length=1000)
    assert not (tmp_path / "o.npz.parts").exists()


def test_out_of_memory_halves_the_batch_and_keeps_every_row(tmp_path, monkeypatch):
    make_model(tmp_path / "rm")
    write_records(tmp_path / "rows.jsonl", prompts=4)
    embed(
        tmp_path / "rm", tmp_path / "rows.jsonl", tmp_path / "a.npz", batch_size=8, progress=False
    )
    forward = model_features._Encoder.forward
    sizes = []

    def small_memory(self, batch):  # a device that holds 3 rows at a time
        sizes.append(len(batch))
        if len(batch) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(self, batch)

    monkeypatch.setattr(model_features._Encoder, "forward", small_memory)
    embed(
        tmp_path / "rm", tmp_path / "rows.jsonl", tmp_path / "b.npz", batch_size=8, progress=False
    )
    assert sizes[:3] == [8, 4, 2] and max(sizes[3:]) == 2
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        np.testing.assert_allclose(a["embeddings"], b["embeddings"], atol=1e-5)
        np.testing.assert_allclose(a["model_rewards"], b["model_rewards"], atol=1e-5)


def assert_same_output(first: Path, second: Path) -> None:
    """The same arrays in both files (floats to float32 rounding of another batch order)."""
    with np.load(first) as a, np.load(second) as b:
        assert a.files == b.files
        for key in a.files:
            if a[key].dtype.kind == "f":
                np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-6, err_msg=key)
            else:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_two_gloo_ranks_equal_one_process(tmp_path):
    make_model(tmp_path / "rm")
    write_records(tmp_path / "rows.jsonl", prompts=7)  # 21 rows: 6 shards of 4, uneven per rank
    one = tmp_path / "one.npz"
    embed(tmp_path / "rm", tmp_path / "rows.jsonl", one, shard_rows=4, batch_size=3, progress=False)
    two = tmp_path / "two.npz"
    paths = [str(tmp_path / "rm"), str(tmp_path / "rows.jsonl"), str(two)]
    summaries = gloo.run_ranks(__file__, 2, tmp_path, *paths, timeout=TIMEOUT_S)
    assert [summary.rows for summary in summaries] == [21, 21]  # both got rank 0's summary
    assert_same_output(one, two)


def test_command_line_under_torchrun_writes_the_single_process_file_and_batch(tmp_path):
    make_model(tmp_path / "rm")
    write_records(tmp_path / "rows.jsonl", prompts=5)
    common = ["--model", str(tmp_path / "rm"), "--data", str(tmp_path / "rows.jsonl")]
    common += ["--shard-rows", "4", "--batch-size", "3", "--no-progress"]
    embed_command = ["-m", "activerm_fast", "embed", *common, "--out", str(tmp_path / "two.npz")]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [*command, "2", *embed_command], env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "15 rows of 32-d features" in done.stdout and "(2 processes)" in done.stdout
    from activerm_fast.cli import main

    assert main(["embed", *common, "--out", str(tmp_path / "one.npz")]) == 0
    assert_same_output(tmp_path / "one.npz", tmp_path / "two.npz")
    # and select --reward-head over a pool sharded across two processes: the one-process batch
    select = ["select", "--data", str(tmp_path / "one.npz"), "--reward-head", "--k", "4"]
    select += ["--labelled", str(tmp_path / "labelled.jsonl"), "--pool-size", "60"]
    assert main([*select, "--out", str(tmp_path / "one.jsonl")]) == 0
    sharded = [*command, "2", "-m", "activerm_fast", *select, "--out", str(tmp_path / "two.jsonl")]
    done = subprocess.run(sharded, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "score head" in done.stdout and "(2 processes)" in done.stdout
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_in_bfloat16_equals_the_cpu(tmp_path):
    make_model(tmp_path / "rm")
    write_records(tmp_path / "rows.jsonl")
    cpu = embed(
        tmp_path / "rm", tmp_path / "rows.jsonl", tmp_path / "cpu.npz", device="cpu", progress=False
    )
    gpu = embed(
        tmp_path / "rm",
        tmp_path / "rows.jsonl",
        tmp_path / "gpu.npz",
        device="cuda",
        progress=False,
    )
    assert cpu.tokens == gpu.tokens
    with np.load(tmp_path / "cpu.npz") as a, np.load(tmp_path / "gpu.npz") as b:
        scale = np.abs(a["embeddings"]).max()
        np.testing.assert_allclose(b["embeddings"], a["embeddings"], atol=0.05 * scale)
        np.testing.assert_allclose(b["model_rewards"], a["model_rewards"], atol=0.05)
        np.testing.assert_array_equal(a["head_weight"], b["head_weight"])
        info = json.loads(str(b["embed_info"]))
    assert info["rewards"] and info["pooling"] == "last"


def embed_rank(rank: int, world: int, model: str, data: str, out: str) -> Any:
    """One rank of test_two_gloo_ranks_equal_one_process, in a joined gloo group."""
    return embed(model, data, out, shard_rows=4, batch_size=3, progress=False)


# ---- selection with the reward model's head ---------------------------------------------------


def test_select_with_the_reward_models_head(tmp_path):
    make_model(tmp_path / "rm")
    write_records(tmp_path / "rows.jsonl", prompts=8)
    out = tmp_path / "out.npz"
    embed(tmp_path / "rm", tmp_path / "rows.jsonl", out, progress=False)
    dataset, head = arm.load(out), RewardHead.load(out)
    pool = arm.pairs.cross_prompt(dataset.prompt_ids, 200, seed=0)
    with np.load(out) as z:
        rewards = z["model_rewards"]
    by_head = arm.select_with_model("dopt-greedy", head, dataset.embeddings, pool, 10)
    direct = arm.select(
        "dopt-greedy", features=dataset.embeddings, pairs=pool, k=10, rewards=rewards
    )
    np.testing.assert_array_equal(by_head.indices, direct.indices)
    tensor = head.features_and_rewards(torch.from_numpy(dataset.embeddings))[1]
    assert isinstance(tensor, torch.Tensor)
    with pytest.raises(ValueError, match=r"features must have shape \(n, 32\)"):
        head.rewards(np.zeros((3, 4)))


def test_select_on_the_reward_head_takes_the_laplace_uncertainty(tmp_path, capsys):
    """The uncertainty rules need an ensemble's spread, which one reward model lacks: select
    --reward-head refuses them in one line naming --uncertainty laplace, and with it chooses
    the batch the Python API chooses with uncertainty="laplace"."""
    from activerm_fast.cli import main

    make_model(tmp_path / "rm")
    write_records(tmp_path / "rows.jsonl", prompts=8, per_prompt=4)
    out, batch = tmp_path / "out.npz", tmp_path / "batch.jsonl"
    embed(tmp_path / "rm", tmp_path / "rows.jsonl", out, progress=False)
    args = ["select", "--data", str(out), "--labelled", str(tmp_path / "labelled.jsonl")]
    args += ["--k", "5", "--reward-head", "--pool", "within", "--per-prompt", "1"]
    args += ["--strategy", "dts", "--out", str(batch)]
    capsys.readouterr()  # the model's save reports its progress
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--reward-head is one model: pass --uncertainty laplace" in err
    assert not batch.exists()
    assert main([*args, "--uncertainty", "laplace"]) == 0
    chosen = np.array([[r["first"], r["second"]] for r in map(json.loads, batch.open())])
    dataset, head = arm.load(out), RewardHead.load(out)
    pool = arm.pairs.within_prompt(dataset.prompt_ids)
    options = {"per_prompt": 1, "prompt_ids": dataset.prompt_ids, "uncertainty": "laplace"}
    expected = arm.select_with_model("dts", head, dataset.embeddings, pool, 5, **options)
    np.testing.assert_array_equal(chosen, pool[np.asarray(expected.indices)])
    prompts = dataset.prompt_ids[chosen]
    assert np.all(prompts[:, 0] == prompts[:, 1]) and len(set(prompts[:, 0])) == 5
    # the pool sharded over two processes: the same batch
    sharded = tmp_path / "sharded.jsonl"
    laplace = [*args[:-1], str(sharded), "--uncertainty", "laplace", "--processes", "2"]
    assert main(laplace) == 0
    assert sharded.read_bytes() == batch.read_bytes()


def test_the_embedded_file_feeds_simulate(tmp_path):
    make_model(tmp_path / "rm")
    write_records(tmp_path / "rows.jsonl", prompts=12, per_prompt=4)
    embed(tmp_path / "rm", tmp_path / "rows.jsonl", tmp_path / "out.npz", progress=False)
    dataset = arm.load(tmp_path / "out.npz", test_fraction=0.25)
    config = arm.LoopConfig(
        rounds=2, per_round=4, prompts_per_round=9, cross_pairs=200, ensemble=2, hidden=(8,)
    )
    records = arm.simulate(
        dataset, ["random", "dopt-greedy"], config=config, seeds=[0], progress=False
    )
    assert {r["strategy"] for r in records} == {"random", "dopt-greedy"}


def test_command_line_embed_then_select(tmp_path, capsys):
    from activerm_fast.cli import main

    make_model(tmp_path / "rm")
    write_records(tmp_path / "rows.jsonl", prompts=8)
    out, batch = tmp_path / "out.npz", tmp_path / "batch.jsonl"
    code = main(
        [
            "embed",
            "--model",
            str(tmp_path / "rm"),
            "--data",
            str(tmp_path / "rows.jsonl"),
            "--out",
            str(out),
            "--batch-size",
            "4",
            "--no-progress",
        ]
    )
    assert (
        code == 0
        and "24 rows of 32-d features, rewards and the score head" in capsys.readouterr().out
    )
    code = main(
        [
            "select",
            "--data",
            str(out),
            "--labelled",
            str(tmp_path / "labelled.jsonl"),
            "--k",
            "5",
            "--reward-head",
            "--strategy",
            "dopt-greedy",
            "--out",
            str(batch),
        ]
    )
    assert code == 0 and "reward model's score head" in capsys.readouterr().out
    records = [json.loads(line) for line in batch.read_text().splitlines()]
    assert len(records) == 5 and {"first_text", "second_prompt_text"} <= set(records[0])
    again = tmp_path / "again.jsonl"  # the batch still out with annotators is not proposed again
    code = main(
        [
            "select",
            "--data",
            str(out),
            "--labelled",
            str(tmp_path / "labelled.jsonl"),
            "--k",
            "5",
            "--reward-head",
            "--strategy",
            "dopt-greedy",
            "--exclude",
            str(batch),
            "--out",
            str(again),
        ]
    )
    assert code == 0
    chosen = [json.loads(line) for line in again.read_text().splitlines()]
    first = {frozenset((r["first"], r["second"])) for r in records}
    assert len(chosen) == 5 and not first & {frozenset((r["first"], r["second"])) for r in chosen}
    # the batch out to annotators: a Label Studio import file with the texts
    tasks = tmp_path / "tasks.json"
    code = main(
        [
            "export",
            "--to",
            "label-studio",
            "--data",
            str(out),
            "--batch",
            str(batch),
            "--out",
            str(tasks),
        ]
    )
    assert code == 0
    exported = json.loads(tasks.read_text())
    assert len(exported) == 5 and records[0]["first_text"] in json.dumps(exported)
    capsys.readouterr()
    # bad input: one line, non-zero
    code = main(
        [
            "embed",
            "--model",
            str(tmp_path / "nothing"),
            "--data",
            str(tmp_path / "rows.jsonl"),
            "--out",
            str(tmp_path / "x.npz"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nothing: no such folder" in err
    code = main(
        [
            "select",
            "--data",
            "arena-bench",
            "--labelled",
            str(tmp_path / "l.jsonl"),
            "--k",
            "5",
            "--reward-head",
            "--out",
            str(batch),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "score head" in err


if __name__ == "__main__":
    gloo.main(embed_rank)


@pytest.mark.parametrize(
    ("score", "read"), [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf")]
)
def test_a_score_that_is_not_finite_is_refused_when_read(tmp_path, score, read):
    # JSON's NaN and Infinity parse to floats: they would become gold that load() refuses
    path = tmp_path / "rows.jsonl"
    path.write_text(
        '{"prompt": "p", "response": "a", "score": 1}\n'
        f'{{"prompt": "p", "response": "b", "score": {score}}}\n'
    )
    with pytest.raises(
        ValueError, match=rf"rows.jsonl, line 2: 'score' must be a finite number, got {read}$"
    ):
        read_text_rows(path)
