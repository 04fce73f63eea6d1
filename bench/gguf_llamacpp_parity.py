"""A GGUF export's answers in llama.cpp itself, against the original model's, scored as the export's parity
check scores (ftml.gguf.answer_parity). The platform's own check runs the GGUF through transformers; this
script runs it in llama.cpp, through llama-cpp-python, which the platform does not install (no wheel on
PyPI: it compiles llama.cpp, 27 minutes here at low priority on the shared 2-core machine):

    .venv/bin/pip install --no-deps --target /tmp/llpy llama-cpp-python==0.3.36 diskcache==5.6.3
    FTPLATFORM_DEBUG=1 PYTHONPATH=/tmp/llpy .venv/bin/python bench/gguf_llamacpp_parity.py \
        var/artifacts/gguf/model-version-1 --model-version 1 --snapshot 1

Inputs: every distinct input of the snapshot's test split, prompted as an evaluation prompts them (the
version's system prompt and worked examples) and rendered with the model tokenizer's chat template (the
export checked that the GGUF carries the same string). Original: base + adapter in transformers, float32,
ftml.inference.generate_greedy. GGUF: llama_cpp.Llama(n_ctx=512, n_threads=2), create_completion with
temperature 0 and top_k 1 (greedy), no repetition penalty, stopping at the file's EOS; answers stripped as
ftml.inference strips them. Prints the parity dict as JSON and each answer that differs.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ftplatform.settings")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path, help="a folder manage.py export_gguf wrote")
    parser.add_argument("--model-version", type=int, required=True)
    parser.add_argument("--snapshot", type=int, required=True)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    import django

    django.setup()
    import llama_cpp

    from curation.formats import prompt_messages
    from curation.models import Snapshot
    from curation.selectors import scoring_options, split_inputs
    from ftml.data import render_prompt
    from ftml.gguf import answer_parity
    from ftml.inference import generate_greedy, load_for_inference
    from training.base_models import materialized_base_model_folder
    from training.exports import read_export_record
    from training.models import ModelVersion

    record = read_export_record(args.export_dir)
    version, snapshot = ModelVersion.objects.get(pk=args.model_version), Snapshot.objects.get(pk=args.snapshot)
    inputs = split_inputs(snapshot, "test")
    prompts = [prompt_messages(entry["input_messages"], version.system_prompt, version.few_shot) for entry in inputs]
    model, tokenizer = load_for_inference(materialized_base_model_folder(version.base_model), version.adapter_path)
    original = [generation.text for generation in generate_greedy(model, tokenizer, prompts, args.max_new_tokens)]
    llm = llama_cpp.Llama(str(args.export_dir / record["gguf_file"]), n_ctx=512, n_threads=2, verbose=False)
    started, converted = time.perf_counter(), []
    for messages in prompts:
        completion = llm.create_completion(render_prompt(tokenizer, messages), max_tokens=args.max_new_tokens,
                                           temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
        converted.append(completion["choices"][0]["text"].strip())
    parity = answer_parity(original, converted, [entry["references"] for entry in inputs], **scoring_options(snapshot))
    print(json.dumps({"gguf_file": record["gguf_file"], "runtime": f"llama-cpp-python {llama_cpp.__version__}",
                      "llama_cpp_seconds": round(time.perf_counter() - started, 1), **parity}, indent=1))
    for before, after in zip(original, converted, strict=True):
        if before != after:
            print(f"differs:\n  original: {before}\n  GGUF:     {after}")


if __name__ == "__main__":
    main()
