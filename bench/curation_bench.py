"""Benchmarks for curation at scale (issue 3's goals): import, snapshot export, and example listing.

Run against PostgreSQL (a scratch test_<name> database is created and dropped):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ftbench .venv/bin/python bench/curation_bench.py --examples 100000
    # + the list at 1,000,000 rows, and peak memory of separate imports of 50k, 100k and 200k examples:
    ... bench/curation_bench.py --examples 100000 --list-rows 1000000 --memory-sizes 50000,100000,200000

It writes chat examples generated from examples/e2e_nlg.chat.jsonl (attribute values varied,
every example distinct) to a JSONL file, then measures:
  1. import_examples() of that file (the import job, run in this process): streamed, full
     validation + dedup + insert with history: examples/s and peak RSS;
  2. the same file imported again (every record a duplicate of the dataset): records/s;
  3. a snapshot of all of them, and its export to chat JSONL and to a Hugging Face dataset;
  4. GET /api/v1/examples/?dataset=...&status=approved at the first page and at a cursor deep
     in the list: p50/p95 ms; with --list-rows, again in a table grown to that many rows
     (rows added by INSERT ... SELECT generate_series, the fastest way to get there).
With --memory-sizes, each size is imported by a fresh process (so its peak RSS is that import's).
With --profile, the import runs under cProfile and the 25 most expensive functions are printed.
"""
import argparse
import itertools
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from base64 import b64encode
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ftplatform.settings")
os.environ.setdefault("FTPLATFORM_SECRET_KEY", secrets.token_urlsafe(50))  # a throwaway: debug stays off


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


def write_file(count: int, folder: Path) -> Path:
    """The generated records as a JSONL file, written one line at a time."""
    path = folder / f"bench-{count}.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for record in generated_records(count):
            handle.write(json.dumps(record))
            handle.write("\n")
    return path


class PeakRss:
    """Samples this process's resident memory (psutil) every 10 ms while the block runs; MB.

    Not ru_maxrss: a child process inherits its parent's high-water mark through fork.
    """

    def __enter__(self):
        import psutil

        self.process = psutil.Process()
        self.before = self.peak = self.process.memory_info().rss / 2**20
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss / 2**20)

    def __exit__(self, *exc_info):
        self.stop.set()
        self.thread.join()


def timed_get(client, url, repeats):
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    samples.sort()
    return response, statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def cursor_before(example_id: int) -> str:
    """A DRF cursor positioned after ``example_id`` (ordering by id)."""
    return quote(b64encode(f"p={example_id}".encode()).decode())


def timed_import(dataset, path, user, profile=False):
    from curation.imports import import_examples

    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    batch = import_examples(dataset, path, "chat_jsonl", by=user, filename=path.name)
    seconds = time.perf_counter() - started
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    assert batch.status == "succeeded", (batch.error, batch.errors[:3])
    return batch, seconds


def list_figures(client, dataset, repeats, label):
    """p50/p95 of the filtered example list at the first page and at cursors half-way and near the end."""
    from curation.models import Example

    url = f"/api/v1/examples/?dataset={dataset.pk}&status=approved&page_size=50"
    _, p50, p95 = timed_get(client, url, repeats)
    print(f"list examples ({label}), first page: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    ids = Example.objects.filter(dataset=dataset, status="approved").order_by("id").values_list("id", flat=True)
    total = ids.count()
    for depth in (total // 2, total - 60):
        _, p50, p95 = timed_get(client, f"{url}&cursor={cursor_before(ids[depth])}", repeats)
        print(f"list examples ({label}), page at depth {depth:,} of {total:,}: p50 {p50:.1f} ms, p95 {p95:.1f} ms")


def grow_table(dataset, user, rows: int) -> float:
    """Add ``rows`` examples to ``dataset`` with one INSERT ... SELECT generate_series (60 % approved,
    30 % submitted, 10 % rejected, in the order of their ids); returns seconds, VACUUM ANALYZE included."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("""
            INSERT INTO curation_example (dataset_id, messages, content_hash, input_hash, status, version,
                                          review_round, metadata, source, created_at, updated_at, author_id)
            SELECT %s, m, encode(sha256(convert_to(m::text, 'UTF8')), 'hex'), md5(n::text) || md5(n::text),
                   CASE WHEN n %% 10 < 6 THEN 'approved' WHEN n %% 10 < 9 THEN 'submitted' ELSE 'rejected' END,
                   1, 1, '{}'::jsonb, 'manual', now(), now(), %s
            FROM generate_series(1, %s) AS n,
                 LATERAL (SELECT jsonb_build_array(
                     jsonb_build_object('role', 'user', 'content', 'name: Place ' || n || ', area: riverside'),
                     jsonb_build_object('role', 'assistant', 'content', 'Place ' || n || ' is by the river.')) AS m) x
        """, [dataset.pk, user.pk, rows])
    vacuum_analyze()
    return time.perf_counter() - started


def vacuum_analyze() -> None:
    """What autovacuum does shortly after a bulk load (PostgreSQL 13+ also vacuums insert-only tables):
    fresh statistics (without them the planner expects a handful of rows and sorts them all for
    the first page) and the visibility map (the list chooses a page by an index-only scan)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE curation_example")


def memory_table(sizes: list[int]) -> None:
    print("\nimport peak memory by file size (a fresh process each):")
    for size in sizes:
        result = subprocess.run([sys.executable, __file__, "--import-only", "--examples", str(size)],
                                capture_output=True, text=True, check=True)
        print("  " + result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--list-rows", type=int, default=0,
                        help="Also measure the list in a table grown to this many rows (e.g. 1000000).")
    parser.add_argument("--memory-sizes", default="",
                        help="Comma-separated file sizes to import in fresh processes for peak RSS (50000,100000).")
    parser.add_argument("--import-only", action="store_true", help="Only the import; print one summary line.")
    parser.add_argument("--profile", action="store_true", help="Run the import under cProfile.")
    args = parser.parse_args()

    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    if connection.vendor != "postgresql":
        sys.exit("run this benchmark with a PostgreSQL DATABASE_URL")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        path = write_file(args.examples, scratch)
        old = setup_databases(verbosity=0, interactive=False)  # a scratch test_<name> database
        try:
            run(args, path, scratch)
        finally:
            teardown_databases(old, verbosity=0)
    if args.memory_sizes:
        memory_table([int(size) for size in args.memory_sizes.split(",")])


def run(args, path: Path, scratch: Path):
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from rest_framework.test import APIClient

    from curation.exports import write_chat_jsonl, write_hf_dataset
    from curation.models import Dataset, Example
    from curation.snapshots import create_snapshot
    from ftplatform.roles import ENGINEER

    settings.ARTIFACTS_ROOT = scratch / "artifacts"
    user = get_user_model().objects.create(username="bench")
    user.groups.add(Group.objects.get(name=ENGINEER))  # imports, snapshots, exports and reads every example
    dataset = Dataset.objects.create(name="bench")
    size_mb = path.stat().st_size / 1e6
    with PeakRss() as rss:
        batch, seconds = timed_import(dataset, path, user, profile=args.profile)
    summary = (f"import of {args.examples:,} examples ({size_mb:.0f} MB file): {batch.created_count:,} created in "
               f"{seconds:.1f} s = {batch.created_count / seconds:,.0f} examples/s; peak RSS {rss.peak:.0f} MB "
               f"({rss.before:.0f} MB before the import)")
    if args.import_only:
        print(summary)
        return
    print(f"generated {args.examples:,} examples, {size_mb:.1f} MB")
    print(summary)
    print(f"  history rows: {Example.history.filter(import_batch=batch).count():,}")

    again, seconds = timed_import(dataset, path, user)
    print(f"import of the same file again: {again.duplicate_count:,} duplicates of the dataset found in "
          f"{seconds:.1f} s = {again.duplicate_count / seconds:,.0f} records/s")

    Example.objects.filter(dataset=dataset).update(status="approved")  # the bench measures export, not review
    vacuum_analyze()
    started = time.perf_counter()
    snapshot, _ = create_snapshot(dataset, by=user)
    print(f"snapshot of {snapshot.example_count:,} examples: {time.perf_counter() - started:.1f} s")
    folder = scratch / "export"
    started = time.perf_counter()
    keys = set()
    counts = write_chat_jsonl(snapshot, folder, keys)
    print(f"export to chat JSONL: {sum(counts.values()):,} lines in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    write_hf_dataset(folder, keys)
    print(f"export to a Hugging Face dataset (DatasetDict folder + tar): {time.perf_counter() - started:.1f} s")

    client = APIClient()
    client.force_authenticate(user)
    list_figures(client, dataset, args.repeats, f"{Example.objects.count():,} rows")
    if args.list_rows > Example.objects.count():
        big = Dataset.objects.create(name="bench-list")
        rows = args.list_rows - Example.objects.count()
        seconds = grow_table(big, user, rows)
        print(f"added {rows:,} rows with INSERT ... SELECT generate_series in {seconds:.1f} s "
              f"(table: {Example.objects.count():,} rows)")
        list_figures(client, big, args.repeats, f"{Example.objects.count():,} rows")


if __name__ == "__main__":
    main()
