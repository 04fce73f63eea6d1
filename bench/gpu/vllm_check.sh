#!/usr/bin/env bash
# GPU check of ftml.vllm's launch plan (docs/serving/vllm.md): on a machine with a GPU and vLLM installed,
# plan a base model + one LoRA adapter, start the generated launch.sh, wait for /v1/models, send chat
# completions to the base and to the adapter through the openai client, and print throughput as JSON.
#
#   bench/gpu/vllm_check.sh BASE_MODEL_DIR [ADAPTER_DIR]
#
# Without ADAPTER_DIR a rank-8 LoRA adapter with random (non-zero) weights is made on BASE_MODEL_DIR with peft,
# so the adapter's answers must differ from the base's: that shows the adapter is applied, not ignored.
# BASE_MODEL_DIR must be a model vLLM supports (e.g. SmolLM2-135M-Instruct as the platform materializes it);
# the tests' tiny 2-layer model has a head size vLLM's attention kernels do not take.
# Environment: PYTHON (default python, needs ftml's requirements + vllm + openai), PORT (default 8011),
# REQUESTS (per model, default 64), MAX_TOKENS (default 64), START_TIMEOUT_S (default 600).
set -euo pipefail
BASE=$(realpath "${1:?usage: bench/gpu/vllm_check.sh BASE_MODEL_DIR [ADAPTER_DIR]}")
ADAPTER=${2:+$(realpath "$2")}
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
PORT=${PORT:-8011}
WORK=$(mktemp -d)
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1
export VLLM_CHECK_KEY="check-$RANDOM$RANDOM"

if [ -z "$ADAPTER" ]; then
  ADAPTER=$WORK/random-adapter
  "$PYTHON" - "$BASE" "$ADAPTER" <<'PY'
import sys
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM
torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                    task_type="CAUSAL_LM")
get_peft_model(model, config).save_pretrained(sys.argv[2])
PY
fi

"$PYTHON" - "$BASE" "$ADAPTER" "$PORT" "$WORK/launch" <<'PY'
import sys
from ftml.vllm import plan_vllm_launch, write_launch_files
base, adapter, port, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
plan = plan_vllm_launch(base, {"check-adapter": adapter}, served_model_name="check-base", port=port,
                        api_key_env="VLLM_CHECK_KEY")
write_launch_files(plan, folder)
print("plan:", " ".join(plan.argv))
for warning in plan.warnings:
    print("warning:", warning)
PY

"$WORK/launch/launch.sh" > "$WORK/vllm.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
started=$(date +%s)
until curl -sf -H "Authorization: Bearer $VLLM_CHECK_KEY" "http://127.0.0.1:$PORT/v1/models" > "$WORK/models.json"; do
  if ! kill -0 $SERVER 2>/dev/null || [ $(( $(date +%s) - started )) -gt "${START_TIMEOUT_S:-600}" ]; then
    echo "vLLM did not come up; last lines of its log:" >&2; tail -40 "$WORK/vllm.log" >&2; exit 1
  fi
  sleep 2
done
echo "vLLM ready after $(( $(date +%s) - started )) s"

"$PYTHON" - "$PORT" "$WORK/models.json" <<'PY'
import json, os, sys, time
from concurrent.futures import ThreadPoolExecutor
from openai import OpenAI

port, models_file = int(sys.argv[1]), sys.argv[2]
listed = {m["id"] for m in json.load(open(models_file))["data"]}
assert {"check-base", "check-adapter"} <= listed, f"/v1/models lists {sorted(listed)}"
client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=os.environ["VLLM_CHECK_KEY"])
requests, max_tokens = int(os.environ.get("REQUESTS", 64)), int(os.environ.get("MAX_TOKENS", 64))
prompts = [f"Describe restaurant number {i} near the river in one sentence." for i in range(requests)]

def ask(model, prompt):
    answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                            temperature=0, max_tokens=max_tokens)
    return answer.choices[0].message.content, answer.usage.completion_tokens

results, texts = {}, {}
for model in ("check-base", "check-adapter"):
    ask(model, "warm up")
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda p: ask(model, p), prompts))
    wall = time.perf_counter() - started
    tokens = sum(n for _, n in answers)
    texts[model] = [t for t, _ in answers]
    results[model] = {"requests": requests, "wall_s": round(wall, 2), "completion_tokens": tokens,
                      "output_tokens_per_s": round(tokens / wall, 1), "requests_per_s": round(requests / wall, 2)}
again = [ask("check-adapter", p)[0] for p in prompts[:4]]
results["adapter_answers_differ_from_base"] = sum(a != b for a, b in zip(texts["check-base"], texts["check-adapter"]))
results["greedy_repeatable"] = again == texts["check-adapter"][:4]
print(json.dumps(results, indent=2))
PY
