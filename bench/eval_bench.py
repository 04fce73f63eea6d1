"""Evaluation generation throughput: batch-1 greedy (one model.generate per input) against batched greedy.

    .venv/bin/python bench/eval_bench.py --json var/eval_bench.json
    .venv/bin/python bench/eval_bench.py --inputs 8 --batch-sizes 4 --max-new-tokens 16   # smoke run

One process, one model load, the variants one after the other on the same inputs:

  naive         ftml.inference.generate_greedy: one model.generate per input (batch
                size 1), what the evaluation job runs today.
  batched B     ftml.inference.generate_batched(batch_size=B): inputs sorted by prompt
                length, left-padded batches of B, one model.generate per batch (KV cache).

Both are greedy with the same max_new_tokens, EOS = the tokenizer's, and both record each
answer's mean log-probability (the same logits processor), so they do the same work per token.

Inputs: the first --inputs distinct inputs (messages before the last) of the E2E NLG chat file, in
file order, with the dataset's system prompt (the first record's system message) prepended where
an input has none, as the evaluation job does. Base model: SmolLM2-135M-Instruct, float32, from
the cache of dequantized base models (--base-model; never dequantized here). torch threads =
--threads (2). One untimed warm-up generate runs first.

What is measured:
  wall s            the whole call (prompt rendering and tokenizing included), time.perf_counter.
  inputs/s          inputs / wall s.
  out tok/s         answer tokens (up to and including EOS) / wall s.
  speedup           naive wall s / this wall s.
  agreement         share of inputs whose answer text equals the naive one exactly.
  peak RSS MiB      the process's VmHWM after the variant, the high-water mark reset before it
                    (/proc/self/clear_refs "5"), so each variant's own peak is shown; the model
                    (~0.5 GiB float32) is resident throughout.
  decode use        batched only: generated answer tokens / (rows x decode steps) summed over the
                    batches. A batch decodes until its longest answer ends; rows that finished
                    earlier are carried along as padding, so this is the share of decode slots that
                    produced answer tokens. The batches are recomputed from prompt_tokens exactly as
                    generate_batched forms them (stable sort by prompt length).
  prompt pad        batched only: left-padding tokens / all prompt tokens of the batches.
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA_FILE = ROOT / "examples" / "e2e_nlg.chat.jsonl"  # the same bytes as /work/shared/data/e2e_nlg.chat.jsonl
BASE_MODEL = ROOT / "var" / "artifacts" / "base_models" / "SmolLM2-135M-Instruct"


def peak_rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def load_inputs(path: Path, count: int) -> list[list[dict]]:
    from curation.formats import input_messages, with_system_prompt

    with open(path, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    first = records[0]["messages"]
    system_prompt = first[0]["content"] if first and first[0]["role"] == "system" else ""
    seen, inputs = set(), []
    for record in records:
        messages = with_system_prompt(input_messages(record["messages"]), system_prompt)
        key = json.dumps(messages, sort_keys=True)
        if key not in seen:
            seen.add(key)
            inputs.append(messages)
            if len(inputs) == count:
                break
    return inputs


def batch_shape(generations, batch_size: int) -> dict:
    """Decode-slot use and prompt padding of the batches generate_batched formed."""
    order = sorted(range(len(generations)), key=lambda i: generations[i].prompt_tokens)
    slots = used = padded = prompt = 0
    for start in range(0, len(order), batch_size):
        rows = [generations[i] for i in order[start:start + batch_size]]
        slots += len(rows) * max(g.output_tokens for g in rows)
        used += sum(g.output_tokens for g in rows)
        width = max(g.prompt_tokens for g in rows)
        padded += sum(width - g.prompt_tokens for g in rows)
        prompt += len(rows) * width
    return {"decode_use": used / slots if slots else None, "prompt_pad": padded / prompt if prompt else None}


def measure(name: str, run) -> tuple[dict, list]:
    reset_peak_rss()
    started = time.perf_counter()
    generations = list(run())
    wall = time.perf_counter() - started
    return {"variant": name, "wall_s": wall, "inputs": len(generations),
            "inputs_per_s": len(generations) / wall,
            "output_tokens": sum(g.output_tokens for g in generations),
            "output_tokens_per_s": sum(g.output_tokens for g in generations) / wall,
            "peak_rss_mib": peak_rss_mib()}, generations


def fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown(rows: list[dict]) -> str:
    lines = ["| variant | wall s | inputs/s | out tok/s | speedup | agreement | decode use | prompt pad "
             "| peak RSS MiB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['wall_s']:.1f} | {r['inputs_per_s']:.2f} | {r['output_tokens_per_s']:.1f} | "
            f"{r['speedup']:.2f}× | {r['agreement']:.0%} | {fmt(r.get('decode_use'), '.0%')} | "
            f"{fmt(r.get('prompt_pad'), '.0%')} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-model", type=Path, default=BASE_MODEL,
                        help="dequantized SmolLM2-135M-Instruct folder (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=DATA_FILE, help="chat JSONL (default: %(default)s)")
    parser.add_argument("--inputs", type=int, default=48, help="distinct inputs to answer (default: 48)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if not (args.base_model / "config.json").is_file():
        parser.error(f"{args.base_model} is not a model folder (dequantize it once through ftplatform, "
                     "or point --base-model at the cache)")

    import torch
    import transformers

    from ftml.inference import generate_batched, generate_greedy, load_for_inference

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    inputs = load_inputs(args.data, args.inputs)
    model, tokenizer = load_for_inference(args.base_model)
    list(generate_greedy(model, tokenizer, inputs[:1], max_new_tokens=4))  # warm-up, untimed

    rows = []
    naive, reference = measure("naive (batch 1)", lambda: generate_greedy(
        model, tokenizer, inputs, max_new_tokens=args.max_new_tokens))
    naive.update(speedup=1.0, agreement=1.0)
    rows.append(naive)
    print(f"naive: {naive['wall_s']:.1f} s", file=sys.stderr)
    disagreements = {}
    for batch_size in args.batch_sizes:
        row, generations = measure(f"batched {batch_size}", lambda b=batch_size: generate_batched(
            model, tokenizer, inputs, batch_size=b, max_new_tokens=args.max_new_tokens))
        same = [a.text == b.text for a, b in zip(generations, reference, strict=True)]
        row.update(batch_size=batch_size, speedup=naive["wall_s"] / row["wall_s"], agreement=sum(same) / len(same),
                   mean_logprob_max_abs_diff=max(abs(a.mean_logprob - b.mean_logprob)
                                                 for a, b in zip(generations, reference, strict=True)),
                   **batch_shape(generations, batch_size))
        disagreements[batch_size] = [{"input": i, "naive": reference[i].text, "batched": generations[i].text}
                                     for i, ok in enumerate(same) if not ok]
        rows.append(row)
        print(f"batched {batch_size}: {row['wall_s']:.1f} s", file=sys.stderr)

    lengths = [g.output_tokens for g in reference]
    prompts = [g.prompt_tokens for g in reference]
    setup = {
        "base_model": str(args.base_model), "data": str(args.data), "inputs": len(inputs),
        "max_new_tokens": args.max_new_tokens, "torch_threads": torch.get_num_threads(),
        "prompt_tokens_min_mean_max": [min(prompts), sum(prompts) / len(prompts), max(prompts)],
        "output_tokens_min_mean_max": [min(lengths), sum(lengths) / len(lengths), max(lengths)],
        "answers_hitting_max_new_tokens": sum(n >= args.max_new_tokens for n in lengths),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": os.getloadavg(),
    }
    print(f"{len(inputs)} inputs, prompt tokens {min(prompts)}–{max(prompts)}, answer tokens "
          f"{min(lengths)}–{max(lengths)} (mean {sum(lengths) / len(lengths):.1f}), max_new_tokens "
          f"{args.max_new_tokens}, torch threads {torch.get_num_threads()}, load average before/after "
          f"{load_before[0]:.2f}/{setup['loadavg_1_5_15_after'][0]:.2f} on {os.cpu_count()} CPUs\n")
    print(markdown(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"setup": setup, "results": rows, "disagreements": disagreements,
                                         "naive_outputs": [g.text for g in reference]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
