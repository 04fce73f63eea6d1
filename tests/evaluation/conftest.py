import pytest

from tests.support.factories import tuned_vs_prompted_runs, two_eval_runs
from tests.support.fake_openai import FakeOpenAI

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture
def fake_openai(monkeypatch):
    """A local OpenAI-compatible server on 127.0.0.1 (tests.support.fake_openai.FakeOpenAI), stopped after the test.
    Proxy variables are cleared so that clients talk to it directly, never through another machine."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def two_runs():
    """tests.support.factories.two_eval_runs: a dataset with two criteria and two succeeded eval runs
    (two model versions) on one snapshot split; ``(dataset, [prompted_run, tuned_run])``."""
    return two_eval_runs()


@pytest.fixture
def tuned_vs_prompted():
    """tests.support.factories.tuned_vs_prompted_runs: ``(dataset, prompted_run, tuned_run)``."""
    return tuned_vs_prompted_runs()


@pytest.fixture
def decision_runs():
    """tests.support.factories.tuned_vs_prompted_runs with enough inputs for a verdict (24 on the train split,
    evaluation.verdicts.MIN_TEST_INPUTS 20) and both versions evaluated on the validation split too
    (3 inputs), where routing thresholds are chosen: ``(dataset, prompted_run, tuned_run)``."""
    return tuned_vs_prompted_runs(examples=30, validation=True)
