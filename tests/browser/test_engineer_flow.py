"""An engineer's day in a real browser, without the command line: from an approved snapshot to a finished
training run (pre-flight first, then confirm; the tiny model, three steps), a prompted baseline with prices,
an evaluation of both on the test split, and the decision report; and a run's page following it live."""
import json

import pytest

from evaluation.models import EvalRun
from ftplatform.jobrows import JobStatus
from tests.browser.test_report_pages import screenshot
from tests.support.factories import TINY_HYPERPARAMETERS, EngineerFactory, snapshot_of, tiny_base_model
from tests.training.test_charts import make_run
from training.choices import EventKind, ModelVersionKind
from training.models import ModelVersion, TrainingRun
from training.runs import log_event


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_engineer_trains_evaluates_and_reads_the_verdict_in_the_browser(signed_in, live_server, e2e_records,
                                                                           tiny_model_dir, run_jobs):
    snapshot, base = snapshot_of(e2e_records[:40]), tiny_base_model(tiny_model_dir)
    page = signed_in(EngineerFactory())
    page.set_default_timeout(120_000)  # a request that trains or generates (jobs run in it without REDIS_URL)

    # Start a training run: the pre-flight report first, nothing created until the confirm.
    page.goto(f"{live_server.url}/admin/training/trainingrun/")
    page.click("#ft-start-run")
    page.select_option("#id_snapshot", str(snapshot.pk))
    page.select_option("#id_base_model", str(base.pk))
    # Too short a max_seq_length: the warnings and what blocks, and no way to start.
    page.fill("#id_hyperparameters", json.dumps({**TINY_HYPERPARAMETERS, "max_seq_length": 56}))
    with page.expect_navigation():
        page.click("#ft-preflight")
    report = page.inner_text("#ft-preflight-report")
    assert "Pre-flight: blocked" in report
    assert "warning: 4 train example(s) are longer than max_seq_length 56" in report
    assert "BLOCKING: 25 train example(s) would have no target token left at max_seq_length 56" in report
    assert page.locator("#ft-confirm").count() == 0
    page.fill("#id_hyperparameters", json.dumps(TINY_HYPERPARAMETERS))
    with page.expect_navigation():
        page.click("#ft-preflight")
    report = page.inner_text("#ft-preflight-report")
    assert "Pre-flight: ready to train" in report and "estimated steps 3" in report
    assert "estimated wall time" in report and f"train examples {snapshot.split_counts['train']}" in report
    assert not TrainingRun.objects.exists()
    screenshot(page, "engineer_preflight")
    with page.expect_navigation():
        page.click("#ft-confirm")

    # The run's page: finished (with REDIS_URL a worker trains meanwhile, and the page follows it), its
    # progress full, the loss chart drawn, each event listed once.
    run_jobs()
    page.wait_for_selector("#ft-run-live[data-live-running=false]")
    run = TrainingRun.objects.get()
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert page.inner_text("#ft-run-status") == "Succeeded"
    assert page.get_attribute("#ft-run-progress", "value") == page.get_attribute("#ft-run-progress", "max") == "3"
    assert page.locator("svg.loss-chart polyline.train").count() == 1
    events = page.inner_text("#ft-run-events")
    assert events.count("training on") == 1 and "loss=" in events
    assert page.get_attribute("#ft-run-live", "data-live-running") == "false"
    tuned = ModelVersion.objects.get(training_run=run)
    assert tuned.name in page.inner_text("#ft-run-next")
    screenshot(page, "engineer_run")

    # A prompted baseline to compare with, from the run page's link, then its prices.
    with page.expect_navigation():
        page.click("#ft-run-next >> text=Create a prompted baseline")
    page.select_option("#id_base_model", str(base.pk))
    with page.expect_navigation():
        page.click("text=Create the baseline")
    baseline = ModelVersion.objects.get(kind=ModelVersionKind.PROMPTED_BASE)
    assert baseline.system_prompt == snapshot.system_prompt
    assert f"Model version {baseline.pk} created" in page.inner_text(".messagelist")
    page.fill("#id_price_per_million_input_tokens", "2.5")
    page.fill("#id_price_per_million_output_tokens", "10")
    with page.expect_navigation():
        page.click("input[name=_save]")
    baseline.refresh_from_db()
    assert (baseline.price_per_million_input_tokens, baseline.price_per_million_output_tokens) == (2.5, 10.0)

    # Evaluate both on the test split, chosen from the model version list.
    page.check(f"input[name=_selected_action][value='{tuned.pk}']")
    page.check(f"input[name=_selected_action][value='{baseline.pk}']")
    page.select_option("select[name=action]", "evaluate_selected")
    with page.expect_navigation():
        page.click("button[name=index]")
    assert page.is_checked(f"input[name=model_versions][value='{tuned.pk}']")
    assert page.is_checked(f"input[name=model_versions][value='{baseline.pk}']")
    page.select_option("#id_snapshot", str(snapshot.pk))
    page.select_option("#id_split", "test")
    page.fill("#id_max_new_tokens", "8")
    with page.expect_navigation():
        page.click("#ft-start-evaluations")
    assert "Started 2 eval run(s)" in page.inner_text(".messagelist")
    run_jobs()
    page.reload()
    runs = EvalRun.objects.order_by("id")
    assert [r.status for r in runs] == [JobStatus.SUCCEEDED] * 2, [r.error for r in runs]
    assert page.locator("#result_list tbody tr").count() == 2

    # An eval run's page: done, with its metrics, and the way to the decision report.
    page.goto(f"{live_server.url}/admin/evaluation/evalrun/{runs[0].pk}/change/")
    assert page.inner_text("#ft-eval-status") == "Succeeded"
    assert f"generated {runs[0].total}/{runs[0].total} inputs" in page.inner_text("#ft-eval-count")
    assert "chrf" in page.inner_text("#ft-eval-metrics")
    with page.expect_navigation():
        page.click("#ft-eval-next >> text=Decision report")
    assert page.inner_text("#ft-verdict h2").startswith("Verdict: ")
    models = page.inner_text("#ft-models")
    assert tuned.name in models and baseline.name in models
    screenshot(page, "engineer_decision")


@pytest.mark.django_db(transaction=True)
def test_a_run_page_follows_the_run_without_reloading_and_stops_when_it_ends(signed_in, live_server):
    run = make_run(status=JobStatus.RUNNING, step=1, total_steps=4)
    page = signed_in(EngineerFactory())
    progress_url = f"/admin/training/trainingrun/{run.pk}/progress/"
    polls = []
    page.on("request", lambda request: polls.append(request.url) if progress_url in request.url else None)
    page.goto(f"{live_server.url}/admin/training/trainingrun/{run.pk}/change/")
    assert page.inner_text("#ft-run-status") == "Running"
    page.evaluate("window.ftSamePage = true")  # gone if the page reloads

    log_event(run, EventKind.LOG, "checkpoint saved at step 3", step=3)
    TrainingRun.objects.filter(pk=run.pk).update(step=3)
    page.wait_for_selector("#ft-run-events >> text=checkpoint saved at step 3")
    assert page.get_attribute("#ft-run-progress", "value") == "3"

    TrainingRun.objects.filter(pk=run.pk).update(step=4, status=JobStatus.SUCCEEDED)
    page.wait_for_selector("#ft-run-live[data-live-running=false]")
    assert page.inner_text("#ft-run-status") == "Succeeded" and page.evaluate("window.ftSamePage") is True
    seen = len(polls)
    page.wait_for_timeout(5000)  # more than two polling intervals: an ended run is not polled again
    assert len(polls) == seen and seen >= 2
