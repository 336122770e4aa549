"""Rows/s and tokens/s of ``activerm_fast.data.embed`` against the loops a user would write.

One small random reward model (a LlamaForSequenceClassification built here, random weights,
a word-level tokenizer trained on the benchmark's own words, saved to a temporary folder) and
one JSONL of (prompt, response) records of mixed length. Three ways to get every row's
features and reward, each through the model's chat template:

* ``embed`` — the package: length-sorted batches padded to their own longest row, the next
  shard tokenised in a background thread, shards written to disk and finished into one .npz;
* ``one at a time`` — a forward pass per record, unpadded (the model's own pooling);
* ``fixed padding`` — batches in file order, every row padded to ``max_length`` (the
  tokenizer's ``padding="max_length"``), the model's own pooling.

Each method runs ``--repeats`` times, methods alternating, after one warm-up pass each; the
table gives the median rows/s and tokens/s (real tokens, not padding) and the ratio of
``embed`` to each. ``--out`` saves the table (Markdown) and the raw timings (JSON).

    python bench/bench_model_features.py [--rows 384] [--repeats 3] [--out bench/results]

On a GPU, a random model of about 0.5 B parameters in bfloat16, built on the device in that
dtype (the output is saved as ``model_features_cuda.md``; bench/gpu_check.sh runs it with
fewer rows, most of the time going to the one-at-a-time loop):

    python bench/bench_model_features.py --device cuda --hidden 1024 --layers 32 \
        --rows 4096 --batch-size 64 --out bench/results

Each timed pass is reported on stderr as it ends, so a run stopped early still shows what it
measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from activerm_fast.data import embed

WORDS = [f"w{k}" for k in range(500)]
SPECIALS = ["[PAD]", "[UNK]", "<s>", "</s>", "<|user|>", "<|assistant|>"]
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> {% endfor %}"
)


def build_model(
    folder: Path, hidden: int, layers: int, device: str = "cpu", dtype: str = "float32"
) -> None:
    """A random Llama reward model and its tokenizer in ``folder``, its weights drawn on
    ``device`` and saved in ``dtype`` (a 0.5 B model is drawn in seconds on a GPU)."""
    import tokenizers
    import transformers

    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    trainer = tokenizers.trainers.WordLevelTrainer(special_tokens=SPECIALS)
    tok.train_from_iterator([" ".join(WORDS)], trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="<s>",
        eos_token="</s>",
    )
    fast.chat_template = TEMPLATE
    fast.save_pretrained(folder)
    config = transformers.LlamaConfig(
        vocab_size=fast.vocab_size,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 32),
        num_key_value_heads=max(1, hidden // 64),
        pad_token_id=fast.pad_token_id,
        num_labels=1,
        max_position_embeddings=4096,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.LlamaForSequenceClassification(config)
    model.to(getattr(torch, dtype)).save_pretrained(folder)


def write_records(path: Path, rows: int, max_words: int, seed: int = 0) -> None:
    """Prompts of 5-60 words, responses log-normal in length (median ~60 words), capped so that
    no row is truncated (every method then embeds the same tokens)."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as out:
        for row in range(rows):
            prompt = " ".join(rng.choice(WORDS, rng.integers(5, 60)))
            length = int(min(max_words, max(1, rng.lognormal(np.log(60), 0.9))))
            response = " ".join(rng.choice(WORDS, length))
            record = {"prompt_id": row // 4, "prompt": prompt, "response": response}
            out.write(json.dumps(record) + "\n")


class Naive:
    """The loops a user writes with transformers directly."""

    def __init__(
        self, folder: Path, records: Path, device: str, dtype: torch.dtype, max_length: int
    ) -> None:
        import transformers

        self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, dtype=dtype)
        self.model = model.to(device).eval()
        self.device, self.max_length = device, max_length
        rows = [json.loads(line) for line in records.read_text().splitlines()]
        self.texts = [
            self.tokenizer.apply_chat_template(
                [
                    {"role": "user", "content": r["prompt"]},
                    {"role": "assistant", "content": r["response"]},
                ],
                tokenize=False,
            )
            for r in rows
        ]

    def _features(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        hidden = out.hidden_states[-1]
        real = (ids != self.model.config.pad_token_id).int()
        last = (torch.arange(ids.shape[1], device=ids.device) * real).argmax(-1)
        pooled = hidden[torch.arange(ids.shape[0], device=ids.device), last]
        return pooled.float().cpu().numpy(), out.logits.float().cpu().numpy()

    def one_at_a_time(self) -> int:
        tokens = 0
        with torch.no_grad():
            for text in self.texts:
                enc = self.tokenizer(
                    text,
                    add_special_tokens=False,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                self._features(enc["input_ids"], enc["attention_mask"])
                tokens += enc["input_ids"].shape[1]
        return tokens

    def fixed_padding(self, batch_size: int) -> int:
        tokens = 0
        with torch.no_grad():
            for start in range(0, len(self.texts), batch_size):
                enc = self.tokenizer(
                    self.texts[start : start + batch_size],
                    add_special_tokens=False,
                    truncation=True,
                    max_length=self.max_length,
                    padding="max_length",
                    return_tensors="pt",
                ).to(self.device)
                self._features(enc["input_ids"], enc["attention_mask"])
                tokens += int(enc["attention_mask"].sum())
        return tokens


def timed(call: Callable[[], int]) -> tuple[float, int]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    tokens = call()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        help="the compute dtype of every method (default: bfloat16 on CUDA, float32 on the CPU)",
    )
    parser.add_argument("--out", type=Path, help="folder for the table (.md) and timings (.json)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            f"bench_model_features.py --device {args.device}: torch {torch.__version__} sees no "
            "CUDA device"
        )

    with tempfile.TemporaryDirectory() as scratch:
        folder, records = Path(scratch) / "rm", Path(scratch) / "rows.jsonl"
        dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
        build_model(folder, args.hidden, args.layers, args.device, dtype)
        write_records(records, args.rows, args.max_length // 2 - 60)
        naive = Naive(folder, records, args.device, getattr(torch, dtype), args.max_length)
        parameters = sum(p.numel() for p in naive.model.parameters())
        runs = 0

        def package() -> int:
            nonlocal runs
            runs += 1
            summary = embed(
                folder,
                records,
                Path(scratch) / f"out{runs}.npz",
                batch_size=args.batch_size,
                max_length=args.max_length,
                device=args.device,
                dtype=dtype,
                progress=False,
            )
            return summary.tokens

        methods: dict[str, Callable[[], int]] = {
            "embed": package,
            "one at a time": naive.one_at_a_time,
            "fixed padding": lambda: naive.fixed_padding(args.batch_size),
        }
        seconds: dict[str, list[float]] = {name: [] for name in methods}
        tokens: dict[str, int] = {}
        for name, call in methods.items():  # warm-up
            tokens[name] = call()
        for _ in range(args.repeats):
            for name, call in methods.items():
                elapsed, tokens[name] = timed(call)
                seconds[name].append(elapsed)
                print(f"  {name}: {elapsed:.2f} s, {tokens[name]} tokens", file=sys.stderr)

    median = {name: statistics.median(s) for name, s in seconds.items()}
    header = (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs "
        f"({platform.machine()}), device {args.device} in {dtype}; random Llama reward model, "
        f"hidden {args.hidden}, {args.layers} layers, {parameters / 1e6:.0f}M parameters; "
        f"{args.rows} rows, {tokens['embed']} tokens, "
        f"batch {args.batch_size}, max_length {args.max_length}; median of {args.repeats}, "
        f"methods alternating; load average {os.getloadavg()[0]:.2f} at the end"
    )
    lines = [
        header,
        "",
        "| method | s | rows/s | tokens/s | embed is faster by |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in methods:
        ratio = median[name] / median["embed"]
        lines.append(
            f"| {name} | {median[name]:.2f} | {args.rows / median[name]:,.0f} | "
            f"{tokens[name] / median[name]:,.0f} | {ratio:.2f}x |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = f"model_features_{args.device.split(':')[0]}"
        (args.out / f"{stem}.md").write_text(table + "\n", encoding="utf-8")
        raw = {"header": header, "rows": args.rows, "tokens": tokens, "seconds": seconds}
        (args.out / f"{stem}.json").write_text(json.dumps(raw, indent=1) + "\n")


if __name__ == "__main__":
    main()
