"""Benchmarks for curation at scale (issue 3's goals): import, snapshot export, and example listing.

Run against PostgreSQL (a scratch database is created and dropped):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ftbench .venv/bin/python bench/curation_bench.py --examples 100000

It generates chat examples from examples/e2e_nlg.chat.jsonl by varying the attribute values
(every generated example is distinct), then measures:
  1. import_examples(): full validation + dedup + bulk insert with history: examples/s, peak RSS;
  2. export of a snapshot of all of them to chat JSONL (the export job's writer): seconds;
  3. GET /api/v1/examples/?dataset=...&status=approved at the first page and the last cursor page: p50/p95 ms.
"""
import argparse
import itertools
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ftplatform.settings")


def generated_records(count: int):
    """Distinct chat records: E2E conversations with a numbered venue name and a varied area."""
    with open(ROOT / "examples" / "e2e_nlg.chat.jsonl", encoding="utf-8") as handle:
        base = [json.loads(line) for line in handle if line.strip()]
    for n, record in zip(range(count), itertools.cycle(base), strict=False):
        system, user, assistant = record["messages"]
        name = user["content"].split(",")[0].removeprefix("name: ")
        venue = f"{name} {n}"
        yield {"messages": [system,
                            {"role": "user", "content": user["content"].replace(name, venue, 1)},
                            {"role": "assistant", "content": assistant["content"].replace(name, venue)}]}


def timed_get(client, url, repeats):
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    samples.sort()
    return response, statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    if connection.vendor != "postgresql":
        sys.exit("run this benchmark with a PostgreSQL DATABASE_URL")
    old = setup_databases(verbosity=0, interactive=False)  # a scratch test_<name> database
    try:
        from django.contrib.auth import get_user_model
        from rest_framework.test import APIClient

        from curation.exports import write_chat_jsonl
        from curation.imports import import_examples
        from curation.models import Dataset, Example
        from curation.snapshots import create_snapshot

        user = get_user_model().objects.create(username="bench")
        dataset = Dataset.objects.create(name="bench")
        data = "\n".join(json.dumps(r) for r in generated_records(args.examples)).encode()
        print(f"generated {args.examples:,} examples, {len(data) / 1e6:.1f} MB")

        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        batch = import_examples(dataset, data, "chat_jsonl", by=user, filename="bench.jsonl")
        seconds = time.perf_counter() - started
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"import: {batch.created_count:,} created, {batch.duplicate_count} duplicates in {seconds:.1f} s "
              f"= {batch.created_count / seconds:,.0f} examples/s; peak RSS {rss_after / 1024:.0f} MB "
              f"(+{(rss_after - rss_before) / 1024:.0f} MB during the import; input file {len(data) / 1e6:.0f} MB)")

        Example.objects.filter(dataset=dataset).update(status="approved")  # the bench measures export, not review
        with connection.cursor() as cursor:
            # What autovacuum does shortly after a bulk load; without fresh statistics the planner
            # expects a handful of rows and sorts all 100k for the first page.
            cursor.execute("ANALYZE curation_example")
        started = time.perf_counter()
        snapshot, _ = create_snapshot(dataset, by=user)
        print(f"snapshot of {snapshot.example_count:,} examples: {time.perf_counter() - started:.1f} s")
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            counts = write_chat_jsonl(snapshot, Path(folder))
            print(f"export to chat JSONL: {sum(counts.values()):,} lines in {time.perf_counter() - started:.1f} s")

        client = APIClient()
        client.force_authenticate(user)
        url = f"/api/v1/examples/?dataset={dataset.pk}&status=approved&page_size=50"
        response, p50, p95 = timed_get(client, url, args.repeats)
        print(f"list examples, first page: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
        # Jump deep: a cursor positioned just before the last page.
        last_id = Example.objects.filter(dataset=dataset).order_by("-id").values_list("id", flat=True)[60]
        from base64 import b64encode
        from urllib.parse import quote

        cursor = quote(b64encode(f"p={last_id}".encode()).decode())
        _, p50, p95 = timed_get(client, f"{url}&cursor={cursor}", args.repeats)
        print(f"list examples, page at depth {args.examples - 60:,}: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    finally:
        teardown_databases(old, verbosity=0)


if __name__ == "__main__":
    main()
