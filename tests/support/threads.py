"""Running test work in several threads at once (concurrency tests on PostgreSQL)."""
from concurrent.futures import ThreadPoolExecutor

from django.db import connections


def in_threads(count, work):
    """``[work(0), ..., work(count - 1)]``, each call in its own thread with its own database
    connections, closed when it returns."""
    def run(index):
        try:
            return work(index)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))
