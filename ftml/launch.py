"""Train one LoRA adapter from the command line, e.g. on several GPUs under Accelerate:

    accelerate launch --num_processes 4 -m ftml.launch \\
        --base-model var/artifacts/base_models/SmolLM2-135M-Instruct --data train.jsonl \\
        [--validation validation.jsonl] --hyperparameters '{"epochs": 2}' --output var/artifacts/runs/multi-gpu

Every process runs train_lora; the Trainer inside SFTTrainer takes the data-parallel setup from
the environment Accelerate (or torchrun) sets, and only the main process writes the output.
``--data`` is chat JSONL (one ``{"messages": [...]}`` per line, e.g. a snapshot export's
train.jsonl). No Django: the platform's runs go through ``manage.py worker``.
"""
import argparse
import json
import sys
from pathlib import Path

from .config import LoraConfig
from .train import train_lora


def read_chat_jsonl(path: Path) -> list[list[dict]]:
    """The ``messages`` of every non-empty line. Raises SystemExit naming the file and line."""
    conversations = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                conversations.append(json.loads(line)["messages"])
            except (ValueError, KeyError, TypeError) as exc:
                raise SystemExit(f"{path}:{number}: not a chat JSONL line with 'messages' ({exc})") from None
    return conversations


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-model", type=Path, required=True, help="A Hugging Face model folder.")
    parser.add_argument("--data", type=Path, required=True, help="Train split, chat JSONL.")
    parser.add_argument("--validation", type=Path, help="Validation split, chat JSONL.")
    parser.add_argument("--hyperparameters", type=json.loads, default={}, help="JSON (ftml.config).")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        config = LoraConfig.from_dict(args.hyperparameters)
    except ValueError as exc:
        raise SystemExit(f"--hyperparameters: {exc}") from None
    result = train_lora(args.base_model, read_chat_jsonl(args.data),
                        read_chat_jsonl(args.validation) if args.validation else [], config, args.output,
                        checkpoint_dir=args.output.with_name(args.output.name + ".checkpoints"))
    print(f"train loss {result.train_loss:.4f}, {result.steps} steps, {result.tokens_per_second:.0f} tokens/s"
          f" on this process; adapter in {result.adapter_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
