import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from ftplatform import queues  # noqa: E402

E2E_FILE = Path(__file__).resolve().parent.parent / "examples" / "e2e_nlg.chat.jsonl"


@pytest.fixture(scope="session")
def e2e_records():
    """The real E2E NLG records (1,000 chat examples)."""
    with open(E2E_FILE, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """On SQLite the test database is a file, as in the quick start, not Django's default shared-cache memory
    database: there the live server's threads and the test meet "database table is locked" at once, where a
    file waits out the writer (the settings' 30 s timeout and IMMEDIATE transactions)."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("database") / "test.sqlite3")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, e2e_records):
    """A 2-layer Llama with a BPE tokenizer trained on E2E text, built once per session."""
    from tests.support.tiny_model import build_tiny_model

    texts = [m["content"] for record in e2e_records[:200] for m in record["messages"]]
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), texts)


@pytest.fixture(scope="session")
def taught_tiny_model_dir(tmp_path_factory, e2e_records):
    """The tiny model taught E2E for a few seconds (tests.support.tiny_model.build_taught_tiny_model): it
    answers in the records' manner, where a fresh one answers only newlines. Built once per session."""
    from tests.support.tiny_model import build_taught_tiny_model

    return build_taught_tiny_model(tmp_path_factory.mktemp("taught-tiny-model"), e2e_records[:200])


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory, e2e_records):
    """The tiny model's kind of tokenizer (trained on the same E2E text) and config, without weights."""
    from tests.support.tiny_model import build_tiny_tokenizer_folder

    texts = [m["content"] for record in e2e_records[:200] for m in record["messages"]]
    return build_tiny_tokenizer_folder(tmp_path_factory.mktemp("tiny-tokenizer"), texts)


@pytest.fixture(autouse=True)
def snapshot_tokenizer(settings, tiny_tokenizer_dir):
    """Snapshots count tokens with a tiny tokenizer, through the real default loader
    (training.base_models.snapshot_token_limits): tests never need SmolLM2."""
    settings.SNAPSHOT_BASE_MODEL = {"name": "tiny-tokenizer", "source_kind": "local_folder",
                                    "source": str(tiny_tokenizer_dir)}
    return tiny_tokenizer_dir


@pytest.fixture(autouse=True)
def artifacts_root(settings, tmp_path):
    settings.ARTIFACTS_ROOT = tmp_path / "artifacts"
    settings.TORCH_THREADS = 1
    return settings.ARTIFACTS_ROOT


@pytest.fixture(autouse=True)
def empty_queues():
    """Real Redis (when REDIS_URL is set) is shared between tests: start each with empty queues."""
    if queues.is_async():
        for name in queues.QUEUE_NAMES:
            queues.get_queue(name).empty()
    yield


@pytest.fixture
def superuser_client(client, django_user_model):
    """The test client signed in as a new superuser, "root"."""
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    return client


@pytest.fixture
def run_jobs():
    """Run every queued job. With REDIS_URL set this is a real RQ burst worker on real Redis
    (SimpleWorker: in this process, so it sees the test database); without it, jobs already
    ran synchronously on commit and this does nothing."""

    def run():
        if queues.is_async():
            from rq import SimpleWorker

            worker = SimpleWorker([queues.get_queue(n) for n in queues.QUEUE_NAMES],
                                  connection=queues.get_connection())
            worker.work(burst=True, with_scheduler=False)

    return run
