import pytest

from evaluation.models import Prediction
from tests.factories import two_eval_runs
from tests.fake_openai import FakeOpenAI
from training.models import ModelVersion

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture
def fake_openai(monkeypatch):
    """A local OpenAI-compatible server on 127.0.0.1 (tests.fake_openai.FakeOpenAI), stopped after the test.
    Proxy variables are cleared so that clients talk to it directly, never through another machine."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def two_runs():
    """tests.factories.two_eval_runs: a dataset with two criteria and two succeeded eval runs
    (two model versions) on one snapshot split; ``(dataset, [prompted_run, tuned_run])``."""
    return two_eval_runs()


@pytest.fixture
def tuned_vs_prompted(two_runs):
    """Run A: a prompted baseline priced per token; run B: a fine-tuned version that answers perfectly,
    priced per GPU-hour, confident where it is right."""
    dataset, (prompted, tuned) = two_runs
    ModelVersion.objects.filter(pk=prompted.model_version_id).update(
        price_per_million_input_tokens=2.5, price_per_million_output_tokens=10.0)
    ModelVersion.objects.filter(pk=tuned.model_version_id).update(kind="lora_adapter", price_per_gpu_hour=1.0)
    for index, prediction in enumerate(Prediction.objects.filter(eval_run=tuned).order_by("id")):
        right = index % 4 != 0
        prediction.output = prediction.references[0] if right else "no idea"
        prediction.mean_logprob = -0.1 if right else -3.0
        prediction.scores = {"bleu": 100.0 if right else 0.0}
        prediction.save()
    Prediction.objects.filter(eval_run=prompted).update(scores={"bleu": 20.0})
    for run in (prompted, tuned):
        run.metrics = {"latency_p50_ms": 900.0, "latency_p95_ms": 1200.0, "mean_input_tokens": 60,
                       "mean_output_tokens": 20, "bleu": 0.0}
        run.save()
    return dataset, prompted, tuned
