"""bench/serving_bench.py's smoke mode end to end: a tiny model, its adapter trained for 2 steps, the naive
loop, then gunicorn serving it on a scratch SQLite database with logging on and off. Checks the figures
it reports, not how fast anything was (speed goals live in bench/README.md)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_smoke_run_reports_every_figure(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL") and not k.lower().endswith("_proxy")}  # a scratch SQLite
    report = tmp_path / "serving.json"
    finished = subprocess.run([sys.executable, "bench/serving_bench.py", "--smoke", "--json", str(report)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    figures = json.loads(report.read_text())
    rows = {row["variant"]: row for row in figures["results"]}
    assert set(rows) == {"naive loop (batch 1)", "served, log on", "served, log on, streamed", "served, log off"}
    requests = figures["setup"]["requests"]
    naive = rows["naive loop (batch 1)"]
    for row in rows.values():
        assert row["requests"] == requests == 6
        assert row["output_tokens"] > 0 and row["wall_s"] > 0
        assert row["requests_per_s"] == pytest.approx(requests / row["wall_s"])
        assert 0 < row["latency_ms_p50"] <= row["latency_ms_p95"] <= row["latency_ms_p99"]
    served = [row for name, row in rows.items() if name.startswith("served")]
    for row in served:
        # Greedy decoding, batched or not, gives the naive loop's answers (as tests/serving/test_endpoint.py).
        assert row["identical"] == requests and row["output_tokens"] == naive["output_tokens"]
        assert row["server_cpu_s"] > 0
    assert rows["served, log on"]["log_rows"] == rows["served, log on, streamed"]["log_rows"] == requests
    assert rows["served, log off"]["log_rows"] == 0
    streamed = rows["served, log on, streamed"]
    assert 0 < streamed["ttft_ms_p50"] <= streamed["latency_ms_p99"]
    assert figures["differences"] == {name: [] for name in rows if name != "naive loop (batch 1)"}

    headline = figures["headline"]
    assert headline["speedup_log_on"] == pytest.approx(rows["served, log on"]["requests_per_s"]
                                                       / naive["requests_per_s"])
    assert headline["identical_log_on"] == headline["identical_log_off"] == requests
    log_write = figures["log_write"]
    assert log_write["count"] == 5 and log_write["ms_median"] > 0 and log_write["database"] == "sqlite3"
    environment = figures["environment"]
    assert "load average" in environment["uptime_before"] and "load average" in environment["uptime_after"]
    assert environment["torch_threads"]["naive loop"] == 2 and environment["versions"]["gunicorn"]
    assert "--workers 1" in environment["server_command"]
    assert "| served, log on |" in finished.stdout  # the table printed for the README
