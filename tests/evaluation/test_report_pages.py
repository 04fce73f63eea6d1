"""The report pages in the admin (decision report, model report, comparison) with their charts,
and the verdict across several baselines."""
import html
import re
import xml.etree.ElementTree as ET

import pytest
from django.urls import reverse

from evaluation.admin_reports import routing_chart, routing_rows
from evaluation.decision import decision_report, score_distribution
from evaluation.models import EvalRun, PairwiseJudgment, Prediction
from evaluation.verdicts import format_p_value, overall_verdict
from ftplatform.charts import bar_chart_svg, nice_ticks
from tests.support.clients import client_for, signed_in_client
from tests.support.factories import EngineerFactory, RaterFactory, tuned_vs_prompted_runs, two_eval_runs
from training.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db
SVG = "{http://www.w3.org/2000/svg}"


def svgs(page: str, css_class: str) -> list[ET.Element]:
    """Every inline <svg class="css_class"> of the page, parsed."""
    found, start = [], 0
    while (start := page.find(f'<svg class="{css_class}"', start)) != -1:
        end = page.index("</svg>", start) + len("</svg>")
        found.append(ET.fromstring(page[start:end]))
        start = end
    return found


def bar_heights(root: ET.Element, group: str) -> list[float]:
    return [float(bar.get("height")) for bar in root.iter(f"{SVG}rect") if bar.get("data-group") == group]


@pytest.fixture
def engineer(client):
    client.force_login(EngineerFactory())
    return client


def add_baseline(tuned: EvalRun, name: str, *, perfect: bool) -> EvalRun:
    """Another prompted version evaluated on the same snapshot split: right on every input, or never."""
    version = ModelVersion.objects.create(name=name, kind="prompted_base", base_model=tuned.model_version.base_model,
                                          system_prompt=name, price_per_gpu_hour=1.0)
    run = EvalRun.objects.create(model_version=version, snapshot=tuned.snapshot, split=tuned.split,
                                 status="succeeded", metrics={"latency_p50_ms": 900.0, "bleu": 100.0 if perfect else 0})
    for prediction in tuned.predictions.all():
        Prediction.objects.create(eval_run=run, input_hash=prediction.input_hash,
                                  input_messages=prediction.input_messages, references=prediction.references,
                                  output=prediction.references[0] if perfect else "?", latency_ms=1.0,
                                  prompt_tokens=3, output_tokens=4, scores={"bleu": 100.0 if perfect else 0.0})
    return run


def test_the_decision_page_shows_the_verdict_tables_and_charts(engineer, decision_runs):
    dataset, prompted, tuned = decision_runs
    page = engineer.get(reverse("admin:evaluation_evalrun_decision") + f"?dataset={dataset.pk}").content.decode()
    assert "Verdict: FINE-TUNE" in page and "the fine-tuned model is better" in page
    assert prompted.model_version.name in page and tuned.model_version.name in page
    (distribution,) = svgs(page, "score-distribution")
    n, wrong = tuned.predictions.count(), len(range(0, tuned.predictions.count(), 4))
    # Ten bins; the tuned model's wrong answers in 0-10 and its right ones in 90-100, scaled alike.
    tuned_bars = bar_heights(distribution, tuned.model_version.name)
    assert len(tuned_bars) == 10 and all(h == 0 for h in tuned_bars[1:9])
    assert tuned_bars[9] / tuned_bars[0] == pytest.approx((n - wrong) / wrong, rel=0.02)
    prompted_bars = bar_heights(distribution, prompted.model_version.name)
    assert prompted_bars[2] > 0 and sum(prompted_bars) == prompted_bars[2]  # every score is 20
    (curve,) = svgs(page, "routing-curve")
    report = decision_report(dataset)
    points = report["baselines"][0]["routing"]["points"]
    assert len(curve.findall(f"{SVG}circle[@class='thresholds-marker']")) == len(points)
    assert len(curve.findall(f"{SVG}circle[@class='suggested-marker']")) == 1
    assert len(curve.findall(f"{SVG}circle[@class='held-out-marker']")) == 1  # the threshold's result on train
    assert curve.find(f"{SVG}line[@class='reference']") is not None  # the target quality
    assert "chosen on the validation split (3 inputs" in page and "on the train split (24 inputs)" in page
    assert "A verdict needs at least 20 test inputs and its tests to agree. With 24 inputs the smallest BLEU" in page
    assert "never fall back (suggested)" in page and "Break-even" in page and "McNemar" in page


def test_the_decision_page_names_models_in_the_leaderboard_and_shows_ratings(engineer, tuned_vs_prompted):
    dataset, prompted, tuned = tuned_vs_prompted
    rater = RaterFactory()
    for a, b in zip(prompted.predictions.order_by("id"), tuned.predictions.order_by("id"), strict=True):
        PairwiseJudgment.objects.create(prediction_a=a, prediction_b=b, rater=rater, left="a", outcome="b")
    page = engineer.get(reverse("admin:evaluation_evalrun_decision") + f"?dataset={dataset.pk}").content.decode()
    board = page[page.index('id="ft-leaderboard"'):]
    assert board.index(tuned.model_version.name) < board.index(prompted.model_version.name)  # the winner first
    assert page.count("<p>Not rated yet.</p>") == 2  # each model says so


def test_the_decision_page_without_a_dataset_offers_the_evaluated_ones(engineer, tuned_vs_prompted):
    dataset, _, _ = tuned_vs_prompted
    page = engineer.get(reverse("admin:evaluation_evalrun_decision") + "?metric=nonsense").content.decode()
    assert f'<option value="{dataset.pk}">{dataset.name}</option>' in page and "Verdict" not in page
    missing = engineer.get(reverse("admin:evaluation_evalrun_decision") + "?dataset=999999")
    assert missing.status_code == 404 and "no dataset named &#x27;999999&#x27; (nor with that id)" in \
        missing.content.decode()
    assert f'<option value="{dataset.pk}">{dataset.name}</option>' in missing.content.decode()
    by_name = engineer.get(reverse("admin:evaluation_evalrun_decision") + f"?dataset={dataset.name}")
    assert by_name.status_code == 200 and "Verdict" in by_name.content.decode()


def test_the_decision_page_uses_the_primary_metric_and_names_it(engineer, tuned_vs_prompted):
    dataset, _, _ = tuned_vs_prompted
    page = engineer.get(reverse("admin:evaluation_evalrun_decision") + f"?dataset={dataset.pk}").content.decode()
    assert "metric BLEU (the snapshot's primary metric)" in page and '<option value="" selected>' in page
    assert "BLEU (primary)" in page


def test_an_unknown_metric_is_refused_naming_the_scored_ones(engineer, tuned_vs_prompted):
    dataset, _, _ = tuned_vs_prompted
    page = engineer.get(reverse("admin:evaluation_evalrun_decision")
                        + f"?dataset={dataset.pk}&metric=<b>rouge").content.decode()
    assert "<b>rouge" not in page and "Verdict" not in page
    assert "metric must be one of exact_match, bleu, chrf, rouge_l" in page


def test_the_json_link_keeps_a_metric_whose_check_name_has_url_characters(engineer):
    """The link put the metric into its query string unencoded: for a check named "a&b #1" it asked the
    API for metric "regex:a" (400)."""
    dataset, _, _ = tuned_vs_prompted_runs(regex_checks={"a&b #1": "Venue"})
    page = engineer.get(reverse("admin:evaluation_evalrun_decision"),
                        {"dataset": dataset.pk, "metric": "regex:a&b #1"}).content.decode()
    link = html.unescape(re.search(r'href="(/api/v1/decision-reports/[^"]*)"', page).group(1))
    response = client_for(EngineerFactory()).get(link)
    assert response.status_code == 200 and response.json()["metric"] == "regex:a&b #1"


def test_the_strongest_baseline_comes_first_and_decides(decision_runs):
    dataset, prompted, tuned = decision_runs
    add_baseline(tuned, "big-prompted-model", perfect=True)
    report = decision_report(dataset, resamples=200)
    assert [b["model_version"] for b in report["baselines"]][0] == "big-prompted-model"
    # Beating the weak baseline is not enough: the perfect one is never beaten.
    assert report["baselines"][1]["verdict"] == "fine-tune"
    assert report["verdict"] != "fine-tune" and "against big-prompted-model" in report["reason"]


@pytest.mark.parametrize("verdicts, expected, names", [
    (["fine-tune"], "fine-tune", ["m0"]),
    (["fine-tune", "fine-tune"], "fine-tune", ["strongest, m0"]),
    (["fine-tune", "not enough evidence"], "not enough evidence", ["m1"]),
    (["not enough evidence", "keep prompting"], "keep prompting", ["m1"]),
    (["keep prompting", "fine-tune"], "keep prompting", ["m0"]),
    (["not enough evidence", "fine-tune", "not enough evidence"], "not enough evidence", ["m0", "m2"]),
])
def test_the_overall_verdict_is_fine_tune_only_against_every_baseline(verdicts, expected, names):
    baselines = [{"model_version": f"m{i}", "verdict": v, "reason": f"reason {i}"} for i, v in enumerate(verdicts)]
    verdict, reason = overall_verdict(baselines)
    assert verdict == expected
    assert all(name in reason for name in names)
    assert not any(f"m{i}" in reason for i in range(len(verdicts)) if not any(f"m{i}" in n for n in names))


def test_there_is_no_verdict_without_baselines():
    with pytest.raises(ValueError):
        overall_verdict([])


def test_score_distribution_counts_scores_in_tenths_with_100_in_the_last(tuned_vs_prompted):
    _, _, tuned = tuned_vs_prompted
    Prediction.objects.filter(pk=tuned.predictions.first().pk).update(scores={"bleu": 10.0})
    counts = score_distribution(tuned, "bleu")["counts"]
    assert len(counts) == 10 and counts[1] == 1 and sum(counts) == tuned.predictions.count()
    assert counts[9] == sum(1 for s in tuned.predictions.values_list("scores", flat=True) if s.get("bleu") == 100)


def test_routing_rows_keep_about_eleven_points_and_the_suggested_one():
    points = [{"label": f"p{i}", "fallback_share": i / 100, "quality": float(i), "cost_per_1k": None,
               "threshold": None} for i in range(101)]
    rows = routing_rows({"points": points, "suggested": points[37]})
    shares = [round(row["percent"]) for row in rows]
    assert shares == [0, 10, 20, 30, 37, 40, 50, 60, 70, 80, 90, 100]
    assert [row["label"] for row in rows if row["suggested"]] == ["p37"]
    assert routing_rows({"points": [], "reason": "no shared inputs"}) == []
    assert routing_chart({"points": [], "reason": "no shared inputs"}, "bleu") == "no shared inputs"


def test_bar_chart_heights_are_proportional_and_text_is_escaped():
    root = ET.fromstring(bar_chart_svg(["a", "b"], [("<m>", [2, 4])], title="t & <u>", x_label="x", y_label="y"))
    low, high = bar_heights(root, "<m>")
    assert high == pytest.approx(2 * low, rel=0.01) and root.find(f"{SVG}title").text == "t & <u>"
    assert bar_chart_svg([], [], title="t", x_label="x", y_label="y", empty="nothing") == "nothing"
    with pytest.raises(ValueError, match="group 'g' has 1 values for 2 categories"):
        bar_chart_svg(["a", "b"], [("g", [1])], title="t", x_label="x", y_label="y")


def test_the_model_report_page_shows_lineage_metrics_cost_and_distribution(engineer, tuned_vs_prompted):
    dataset, prompted, tuned = tuned_vs_prompted
    tuned.metrics = {**tuned.metrics, "confidence_intervals": {"bleu": {"ci_low": 60.0, "ci_high": 90.0}}}
    tuned.save()
    version = tuned.model_version
    page = engineer.get(reverse("admin:evaluation_evalrun_model_report", args=[version.pk])).content.decode()
    assert f"Model report: {version.name}" in page and "(60.0–90.0)" in page
    assert "cost per 1,000 requests 0.2500" in page  # 0.9 s a request at 1.00 per GPU-hour
    (chart,) = svgs(page, "score-distribution")
    assert len(bar_heights(chart, "BLEU")) == 10
    assert f"?a={prompted.pk}&amp;b={tuned.pk}\">Paired comparison with {prompted.model_version.name}" in page
    change = engineer.get(reverse("admin:training_modelversion_change", args=[version.pk])).content.decode()
    assert reverse("admin:evaluation_evalrun_model_report", args=[version.pk]) in change
    assert engineer.get(reverse("admin:evaluation_evalrun_model_report", args=[999999])).status_code == 404


def test_the_model_report_shows_the_prompt_its_run_trained_with(engineer, tuned_vs_prompted):
    _, _, tuned = tuned_vs_prompted
    prefix = "<|im_start|>system\nYou are a tiny assistant.<|im_end|>\n<|im_start|>user\n"
    run = TrainingRun.objects.create(snapshot=tuned.snapshot, base_model=tuned.model_version.base_model,
                                     hyperparameters={}, system_prompt="", prompt_prefix=prefix)
    ModelVersion.objects.filter(pk=tuned.model_version_id).update(training_run=run)
    page = engineer.get(reverse("admin:evaluation_evalrun_model_report", args=[tuned.model_version_id]))
    assert '<pre id="ft-prompt-prefix" style="white-space:pre-wrap">&lt;|im_start|&gt;system\nYou are a tiny ' \
           'assistant.&lt;|im_end|&gt;' in page.content.decode()
    lineage = engineer.get(f"/api/v1/model-versions/{tuned.model_version_id}/report/").json()["lineage"]
    assert (lineage["training_run"]["system_prompt"], lineage["training_run"]["prompt_prefix"]) == ("", prefix)


def test_the_comparison_page_and_the_compare_action(engineer, tuned_vs_prompted):
    _, prompted, tuned = tuned_vs_prompted
    url = reverse("admin:evaluation_evalrun_compare")
    page = engineer.get(f"{url}?a={prompted.pk}&b={tuned.pk}").content.decode()
    assert "paired bootstrap" in page and "McNemar" in page and len(svgs(page, "score-distribution")) == 1
    assert "Compare the two selected" in engineer.get(url).content.decode()
    other = add_baseline(tuned, "other", perfect=False)
    EvalRun.objects.filter(pk=other.pk).update(split="test")
    refused = engineer.get(f"{url}?a={prompted.pk}&b={other.pk}")
    assert refused.status_code == 200 and "different snapshots or splits" in refused.content.decode()

    changelist = reverse("admin:evaluation_evalrun_changelist")
    one = engineer.post(changelist, {"action": "compare_selected", "_selected_action": [tuned.pk]}, follow=True)
    assert "Select exactly two eval runs to compare (got 1)" in one.content.decode()
    two = engineer.post(changelist, {"action": "compare_selected", "_selected_action": [tuned.pk, prompted.pk]})
    assert two.status_code == 302 and two.url == f"{url}?a={min(tuned.pk, prompted.pk)}&b={max(tuned.pk, prompted.pk)}"


def test_the_eval_run_page_draws_its_score_distribution_and_links_the_reports(engineer, tuned_vs_prompted):
    dataset, _, tuned = tuned_vs_prompted
    tuned.metrics = {**tuned.metrics, "bleu": 73.7912,
                     "confidence_intervals": {"bleu": {"ci_low": 60.0, "ci_high": 90.0}}}
    tuned.save()
    page = engineer.get(reverse("admin:evaluation_evalrun_change", args=[tuned.pk])).content.decode()
    assert "<tr><th>bleu</th><td>73.79 (95 % CI 60.00–90.00)</td></tr>" in page  # read, not raw JSON
    assert "name: Venue" in page and "1 ms" in page  # each prediction's input beside its output
    (chart,) = svgs(page, "score-distribution")
    assert len(bar_heights(chart, "BLEU")) == 10
    assert f"{reverse('admin:evaluation_evalrun_decision')}?dataset={dataset.pk}" in page


def test_count_charts_put_every_tick_on_a_whole_number():
    root = ET.fromstring(bar_chart_svg(["a", "b"], [("g", [3, 10])], title="t", x_label="x", y_label="y",
                                       y_format="{:g}".format))
    ticks = [t.text for t in root.iter(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert ticks == ["0", "2", "4", "6", "8", "10"]
    assert nice_ticks(0, 3, whole=True) == [0, 1, 2, 3]  # no half examples


@pytest.mark.parametrize("low, high, expected", [
    (17.2, 78.8, [0, 20, 40, 60, 80]),  # step 15.4 wanted: 20 is the nearest nice one
    (0.95, 2.05, [0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25]),
    (0.964, 1.6, [0.8, 1.0, 1.2, 1.4, 1.6]),
    (5, 5, [5, 10]),  # never a single tick
])
def test_nice_ticks_cover_the_range_at_round_steps(low, high, expected):
    ticks = nice_ticks(low, high)
    assert ticks == pytest.approx(expected) and ticks[0] <= low and ticks[-1] >= high


def test_self_hosted_cost_follows_the_mean_latency_when_recorded(tuned_vs_prompted):
    dataset, _, tuned = tuned_vs_prompted
    tuned.metrics = {**tuned.metrics, "latency_mean_ms": 1800.0}  # a slow tail: the mean is twice the median
    tuned.save()
    # 1,000 x 1.8 s at 1.00 per GPU-hour = 0.5 (the median, 0.9 s, would say 0.25)
    assert decision_report(dataset, resamples=10)["fine_tuned"]["cost_per_1k_requests"] == pytest.approx(0.5)


def test_a_p_value_at_the_bootstrap_floor_is_shown_as_a_bound(engineer, decision_runs):
    """No resample of 1,000 favours the baseline: the two-sided p-value is only known to be below
    2 / 1001; the page and the verdict said "0.002" and "p = 0.002" as if measured."""
    dataset, _, _ = decision_runs
    page = engineer.get(reverse("admin:evaluation_evalrun_decision") + f"?dataset={dataset.pk}").content.decode()
    assert "(95 % CI" in page and "p &lt; 0.002)" in page and "p = 0.002" not in page
    assert "<td>&lt; 0.002</td>" in page and "<td>0.002</td>" not in page


def test_a_tiny_mcnemar_p_value_is_not_shown_as_zero(engineer, decision_runs):
    """The pages rounded McNemar's p-value to three decimals: "p = 0.000", a p-value of zero."""
    dataset, prompted, tuned = decision_runs
    right = sum(score["bleu"] == 100 for score in tuned.predictions.values_list("scores", flat=True))
    shown = f"McNemar's exact test on exact match: p = {2 * 0.5 ** right:.3g}"  # all `right` pairs favour it
    decision = engineer.get(reverse("admin:evaluation_evalrun_decision"), {"dataset": dataset.pk}).content.decode()
    compare = engineer.get(reverse("admin:evaluation_evalrun_compare"), {"a": prompted.pk, "b": tuned.pk})
    assert shown in decision and shown in compare.content.decode() and "p = 0.000" not in decision


@pytest.mark.parametrize("result, shown", [
    ({"p_value": 2 / 201, "p_value_floor": 2 / 201}, "< 0.01"),  # rounded up: the bound stays true
    ({"p_value": 0.0123, "p_value_floor": 2 / 1001}, "0.0123"),
    ({"p_value": 0.125}, "0.125"),  # an exact test has no floor
])
def test_p_values_are_shown_as_measured_or_as_the_bootstrap_floor(result, shown):
    assert format_p_value(result) == shown


def test_the_decision_page_shows_a_baseline_sharing_no_input_as_an_error(client, tuned_vs_prompted):
    """compare_eval_runs' ServiceError ("share no input") escaped the admin view: a 500 (the API said 400)."""
    dataset, prompted, _ = tuned_vs_prompted
    prompted.predictions.all().delete()
    response = signed_in_client(client, EngineerFactory()).get(
        reverse("admin:evaluation_evalrun_decision") + f"?dataset={dataset.pk}")
    assert response.status_code == 200 and "share no input" in response.content.decode()


@pytest.mark.parametrize("metrics", [
    {"bleu": 12.0, "confidence_intervals": "none"},
    {"bleu": 12.0, "confidence_intervals": {"bleu": [1, 2]}},
    {"bleu": 12.0, "confidence_intervals": {"bleu": {"ci_low": "a", "ci_high": None}}},
    {"bleu": "high", "chrf": {"x": 1}, "rouge_l": [1]},
    ["not", "a", "dict"],
])
def test_the_eval_run_pages_show_odd_metrics_json_without_a_500(client, metrics):
    """The metrics table called .get on a string or list and formatted a string with :.2f (the admin
    shows such a read-only field as "-", hiding the error), and the list's BLEU column did the same:
    a 500 on the eval run list for metrics that are a list or hold a string score."""
    _, (run, _) = two_eval_runs()
    EvalRun.objects.filter(pk=run.pk).update(metrics=metrics)
    client.force_login(EngineerFactory())
    client.raise_request_exception = False
    assert client.get(reverse("admin:evaluation_evalrun_change", args=[run.pk])).status_code == 200
    assert client.get(reverse("admin:evaluation_evalrun_changelist")).status_code == 200
