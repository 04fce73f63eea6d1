"""One scoring definition: eval runs and comparisons score a snapshot's outputs alike (its language,
checks), and reports decide on its primary metric unless asked for another."""
import pytest

from evaluation.comparisons import compare_eval_runs
from evaluation.decision import decision_report
from evaluation.models import EvalRun, Prediction
from evaluation.services import start_eval_run
from ftplatform.jobrows import JobStatus
from tests.support.clients import client_for
from tests.support.factories import (
    DatasetFactory,
    EngineerFactory,
    approved_snapshot,
    tuned_vs_prompted_runs,
    unloadable_base_model,
)
from training.model_versions import remote_model_version
from training.models import ModelVersion


@pytest.mark.django_db(transaction=True)
def test_a_chinese_pair_scores_the_same_in_its_eval_runs_and_their_comparison(fake_openai, run_jobs):
    inputs = {f"餐厅{i}：河边，法国菜": f"第{i}号餐厅在河边，提供法国菜，价格便宜。" for i in range(30)}
    snapshot = approved_snapshot(DatasetFactory(language="zh", system_prompt=""), inputs.items())
    # Two "models" behind one endpoint, told apart by their system prompt: a close paraphrase, a vague answer.
    fake_openai.reply = lambda messages: (inputs[messages[-1]["content"]].replace("，价格便宜", "")
                                          if messages[0]["content"] == "close" else "这是一家餐厅。")
    engineer = EngineerFactory()
    runs = []
    for prompt in ("close", "vague"):
        version = remote_model_version(name=prompt, base_url=fake_openai.base_url, remote_model="fake-model",
                                       system_prompt=prompt, by=engineer)
        runs.append(start_eval_run(version, snapshot, by=engineer))
    run_jobs()
    for run in runs:
        run.refresh_from_db()
        assert run.status == JobStatus.SUCCEEDED, run.error
    comparison = compare_eval_runs(*runs, resamples=100)
    assert runs[0].metrics["bleu"] > 10  # scored with the Chinese tokenizer, not as one long English word
    for side, run in zip(("a", "b"), runs, strict=True):
        for name in ("exact_match", "bleu", "chrf", "rouge_l"):
            assert comparison["metrics"][name][side] == pytest.approx(run.metrics[name]), (side, name)


def counting_runs():
    """A counting task (outputs are numbers: exact match proposed) and two hand-made eval runs on its
    train split: a fine-tuned version right on 4 of 5 inputs, a prompted one that never is but
    repeats the number inside a sentence (so BLEU and chrF give it some credit)."""
    dataset = DatasetFactory(name="counting", regex_checks={"digits": r"^\d+$"})
    snapshot = approved_snapshot(dataset, [(f"How many pubs in list {i}?", str(i % 7)) for i in range(40)])
    base = unloadable_base_model()
    runs = []
    for name, kind in (("prompted", "prompted_base"), ("tuned", "lora_adapter")):
        version = ModelVersion.objects.create(name=name, kind=kind, base_model=base, system_prompt=name)
        run = EvalRun.objects.create(model_version=version, snapshot=snapshot, split="train", status="succeeded")
        for index, item in enumerate(snapshot.items.filter(split="train").order_by("id")):
            answer = item.messages[-1]["content"]
            output = (answer if index % 5 else "8") if name == "tuned" else f"There are {answer} pubs in the list."
            Prediction.objects.create(eval_run=run, input_hash=item.input_hash, input_messages=item.messages[:-1],
                                      references=[answer], output=output, latency_ms=1.0, prompt_tokens=3,
                                      output_tokens=1)
        runs.append(run)
    return dataset, runs


@pytest.mark.django_db
def test_the_verdict_is_decided_on_the_snapshots_primary_metric():
    dataset, (prompted, tuned) = counting_runs()
    assert tuned.snapshot.primary_metric == "exact_match"
    report = decision_report(dataset, resamples=200)
    assert (report["metric"], report["metric_label"], report["primary_metric"]) == (
        "exact_match", "exact match", "exact_match")
    (baseline,) = report["baselines"]
    assert baseline["verdict"] == "fine-tune" and "exact match difference +80.00" in baseline["reason"]


@pytest.mark.django_db
def test_another_scored_metric_can_be_asked_for_and_an_unscored_one_is_a_400_listing_them():
    dataset, _ = counting_runs()
    assert decision_report(dataset, metric="regex:digits", resamples=50)["metric_label"] == "regex check digits"
    response = client_for(EngineerFactory()).get(f"/api/v1/decision-reports/?dataset={dataset.pk}&metric=bleurt")
    assert response.status_code == 400
    assert "metric must be one of exact_match, bleu, chrf, rouge_l, regex:digits" in response.json()["detail"]


@pytest.mark.django_db
def test_the_comparison_tests_every_binary_check_of_the_snapshot():
    _, (prompted, tuned) = counting_runs()
    comparison = compare_eval_runs(prompted, tuned, resamples=50)
    assert comparison["primary_metric"] == "exact_match"
    digits = comparison["metrics"]["regex:digits"]
    n = comparison["n"]
    assert (digits["a"], digits["b"]) == (0.0, 100.0)  # every tuned output is a bare number
    assert comparison["metrics"]["regex:digits_mcnemar"] == {"p_value": pytest.approx(2 * 0.5 ** n), "b01": n,
                                                              "b10": 0, "n": n}


@pytest.mark.django_db
def test_runs_scored_before_the_snapshots_primary_metric_are_rescored_not_read_as_zero():
    """Eval runs from before a snapshot froze its primary metric (here JSON validity, which older runs
    did not score) lack it in their per-example scores: the routing curve and the score histograms read
    every missing score as 0, so a model always answering valid JSON was drawn as never doing so."""
    dataset, prompted, tuned = tuned_vs_prompted_runs(examples=30, validation=True, primary_metric="json_valid")
    Prediction.objects.filter(eval_run__model_version=tuned.model_version).update(output='{"pub": true}')
    assert not any("json_valid" in scores for scores in Prediction.objects.values_list("scores", flat=True))
    report = decision_report(dataset, resamples=50)
    held_out = report["baselines"][0]["routing"]["held_out"]
    assert (held_out["fine_tuned_quality"], held_out["baseline_quality"]) == (100.0, 0.0)
    inputs = tuned.predictions.count()
    assert report["fine_tuned"]["distribution"]["counts"][-1] == inputs
    assert report["baselines"][0]["distribution"]["counts"][0] == inputs
