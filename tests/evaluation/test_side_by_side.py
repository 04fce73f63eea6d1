"""Model versions side by side on one snapshot split (evaluation.selectors.side_by_side), its admin
page and ``GET /api/v1/side-by-side/``: differences signed B − A, sorted, filtered and paged; inputs a
run lacks shown as missing; versions without a finished run on the split named."""
import jsonschema
import pytest
from django.urls import reverse

from evaluation.models import EvalRun, Prediction
from evaluation.selectors import SideBySideQuery, side_by_side
from ftplatform.errors import ServiceError
from tests.support.clients import client_for, signed_in_client
from tests.support.factories import EngineerFactory, RaterFactory, UserFactory, answer_split, two_eval_runs
from tests.support.openapi import resolved
from training.models import ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs():
    """Two succeeded runs on the train split of 10 inputs: A ("secret-prompted-model") scores BLEU 50
    on every input, B ("secret-tuned-model") 0, 10, ..., 90 in input order: B − A = -50, -40, ..., +40."""
    dataset, (a, b) = two_eval_runs()
    Prediction.objects.filter(eval_run=a).update(scores={"bleu": 50.0, "chrf": 60.0})
    for index, prediction in enumerate(_in_input_order(b)):
        prediction.scores = {"bleu": 10.0 * index, "chrf": 70.0}
        prediction.save()
    return dataset, a, b


def _in_input_order(run):
    """``run``'s predictions in the split's order (its snapshot items' order)."""
    order = list(dict.fromkeys(run.snapshot.items.filter(split=run.split).order_by("id")
                               .values_list("input_hash", flat=True)))
    by_input = {p.input_hash: p for p in run.predictions.all()}
    return [by_input[h] for h in order]


def query(a, b, *more, **options) -> SideBySideQuery:
    versions = tuple(run.model_version_id for run in (a, b, *more))
    return SideBySideQuery(snapshot=a.snapshot, split=a.split, versions=versions, **options)


def test_each_row_holds_every_output_its_scores_the_references_and_b_minus_a(runs):
    _, a, b = runs
    result = side_by_side(query(a, b))
    assert [side["label"] for side in result["sides"]] == ["A", "B"]
    assert [side["eval_run_id"] for side in result["sides"]] == [a.pk, b.pk]
    assert result["metric"] == "bleu" and result["primary_metric"] == "bleu"
    assert result["sign"].startswith("difference = B − A on BLEU") and "positive: B scored higher" in result["sign"]
    first = result["rows"][0]
    asked = first["input_messages"][-1]["content"]  # "name: Venue 06": the split's order is seeded
    assert first["position"] == 1 and asked.startswith("name: Venue ")
    assert first["references"] == [f"{asked.removeprefix('name: ')} is a pub."]
    output_a, output_b = first["outputs"]
    assert (output_a["output"], output_b["output"]) == (f"prompted says {asked}", f"tuned says {asked}")
    assert output_a["scores"] == {"bleu": 50.0, "chrf": 60.0} and output_b["score"] == 0.0
    assert (output_a["difference"], output_b["difference"], first["difference"]) == (None, -50.0, -50.0)
    assert result["sides"][1]["mean"] == pytest.approx(45.0)


def test_rows_sort_by_difference_either_way_and_by_its_size(runs):
    _, a, b = runs

    def differences(order):
        return [row["difference"] for row in side_by_side(query(a, b, order=order))["rows"]]

    assert differences("input") == [-50, -40, -30, -20, -10, 0, 10, 20, 30, 40]
    assert differences("difference") == [-50, -40, -30, -20, -10, 0, 10, 20, 30, 40]
    assert differences("-difference") == [40, 30, 20, 10, 0, -10, -20, -30, -40, -50]
    assert differences("-abs_difference") == [-50, -40, 40, -30, 30, -20, 20, -10, 10, 0]


def test_the_difference_filter_keeps_an_inclusive_range(runs):
    _, a, b = runs
    result = side_by_side(query(a, b, min_difference=-10, max_difference=20, order="-difference"))
    assert [row["difference"] for row in result["rows"]] == [20, 10, 0, -10]
    assert (result["inputs"], result["matching"], result["left_out_missing"]) == (10, 4, 0)
    assert [row["difference"] for row in side_by_side(query(a, b, min_difference=25))["rows"]] == [30, 40]
    nothing = side_by_side(query(a, b, min_difference=41))
    assert (nothing["matching"], nothing["rows"], nothing["pages"]) == (0, [], 0)
    with pytest.raises(ServiceError, match=r"min_difference \(5\) is above max_difference \(1\)"):
        side_by_side(query(a, b, min_difference=5, max_difference=1))


def test_an_input_one_run_did_not_answer_is_shown_missing_and_sorted_last(runs):
    _, a, b = runs
    lost = _in_input_order(b)[9]  # B's best input (+40)
    lost.delete()
    result = side_by_side(query(a, b, order="-difference"))
    assert result["inputs"] == 10 and len(result["rows"]) == 10
    last = result["rows"][-1]
    assert last["input_hash"] == lost.input_hash and last["difference"] is None
    assert last["outputs"][1] == {"label": "B", "eval_run_id": b.pk, "missing": True, "prediction_id": None,
                                  "output": None, "scores": None, "score": None, "difference": None}
    assert last["outputs"][0]["output"] == "prompted says " + last["input_messages"][-1]["content"]
    assert (result["sides"][1]["answered"], result["sides"][1]["missing"]) == (9, 1)
    # A difference filter cannot place it, and says it left it out.
    filtered = side_by_side(query(a, b, min_difference=-100))
    assert (filtered["matching"], filtered["left_out_missing"]) == (9, 1)


def test_versions_without_a_finished_run_on_the_split_are_named(runs):
    _, a, b = runs
    other = ModelVersion.objects.create(name="never-evaluated-here", kind="prompted_base",
                                        base_model=a.model_version.base_model)
    answer_split(other, a.snapshot, "validation", "other")  # another split: not matched
    EvalRun.objects.create(model_version=other, snapshot=a.snapshot, split="train", status="failed")
    with pytest.raises(ServiceError) as raised:
        side_by_side(SideBySideQuery(snapshot=a.snapshot, split="train", versions=(a.model_version_id, other.pk)))
    message = str(raised.value)
    assert f"never-evaluated-here (model version {other.pk}): no finished (succeeded) eval run" in message
    assert f"snapshot {a.snapshot_id} [train]" in message
    with pytest.raises(ServiceError, match="choose from 2 to 8 model versions, got 1"):
        side_by_side(SideBySideQuery(snapshot=a.snapshot, split="train", versions=(a.model_version_id,)))
    with pytest.raises(ServiceError, match="no model version with id 999999"):
        side_by_side(SideBySideQuery(snapshot=a.snapshot, split="train", versions=(a.model_version_id, 999999)))


def test_the_newest_succeeded_run_of_a_version_is_the_one_compared(runs):
    _, a, b = runs
    newer = answer_split(b.model_version, b.snapshot, "train", "retrained")
    EvalRun.objects.create(model_version=b.model_version, snapshot=b.snapshot, split="train", status="running")
    result = side_by_side(query(a, b))
    assert result["sides"][1]["eval_run_id"] == newer.pk
    assert result["rows"][0]["outputs"][1]["output"].startswith("retrained says name: Venue")


def test_with_three_versions_each_side_is_compared_with_a_and_the_chosen_side_sorts(runs):
    _, a, b = runs
    c = answer_split(ModelVersion.objects.create(name="third", kind="prompted_base",
                                                 base_model=a.model_version.base_model), a.snapshot, "train", "c")
    for index, prediction in enumerate(_in_input_order(c)):
        prediction.scores = {"bleu": 100.0 - 10 * index}
        prediction.save()
    result = side_by_side(query(a, b, c, side="C", order="-difference"))
    assert result["sign"].startswith("difference = C − A")
    top = result["rows"][0]
    assert top["position"] == 1 and top["difference"] == 50
    assert [output["difference"] for output in top["outputs"]] == [None, -50, 50]
    with pytest.raises(ServiceError, match="side must be one of B, C"):
        side_by_side(query(a, b, c, side="A"))


def test_another_metric_may_be_chosen_but_not_one_the_snapshot_does_not_score(runs):
    _, a, b = runs
    result = side_by_side(query(a, b, metric="chrf"))
    assert result["metric_label"] == "chrF" and {row["difference"] for row in result["rows"]} == {10.0}
    with pytest.raises(ServiceError, match="metric must be one of"):
        side_by_side(query(a, b, metric="nonsense"))


def test_rows_are_paged_after_sorting(runs):
    _, a, b = runs
    second = side_by_side(query(a, b, order="-difference", page=2, page_size=4))
    assert (second["pages"], [row["difference"] for row in second["rows"]]) == (3, [0, -10, -20, -30])
    with pytest.raises(ServiceError, match=r"page 4 is past the last page \(3\)"):
        side_by_side(query(a, b, page=4, page_size=4))


# --- the REST API -------------------------------------------------------------------------------


def test_the_api_answers_what_its_schema_documents(runs):
    _, a, b = runs
    _in_input_order(b)[0].delete()  # a missing side: its nulls are documented too
    client = client_for(EngineerFactory())
    response = client.get("/api/v1/side-by-side/", {"snapshot": a.snapshot_id, "split": "train",
                                                    "versions": [a.model_version_id, b.model_version_id],
                                                    "order": "-difference", "page_size": 3})
    assert response.status_code == 200, response.content
    body = response.json()
    assert [row["difference"] for row in body["rows"]] == [40, 30, 20]
    assert body["sides"][1]["judge_pairs"] == f"/api/v1/judgments/next/?a={a.pk}&b={b.pk}"
    assert body["sides"][0]["judge_pairs"] is None  # A is not rated against itself
    schema = client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/side-by-side/"]["get"]
    documented = operation["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(body, resolved(schema, documented))
    assert {"snapshot", "split", "versions", "metric", "side", "order", "min_difference", "max_difference",
            "page", "page_size"} <= {parameter["name"] for parameter in operation["parameters"]}
    missing = client.get("/api/v1/side-by-side/", {"snapshot": a.snapshot_id, "split": "train",
                                                   "versions": [a.model_version_id, b.model_version_id],
                                                   "order": "-difference"}).json()["rows"][-1]
    assert missing["outputs"][1]["missing"] is True and missing["difference"] is None
    jsonschema.validate(response.json(), resolved(schema, documented))


def test_the_api_refuses_bad_queries_naming_the_parameter(runs):
    _, a, b = runs
    client = client_for(EngineerFactory())
    versions = [a.model_version_id, b.model_version_id]
    one = client.get("/api/v1/side-by-side/", {"snapshot": a.snapshot_id, "versions": [a.model_version_id]})
    assert one.status_code == 400 and "versions" in one.json()
    elsewhere = client.get("/api/v1/side-by-side/", {"snapshot": a.snapshot_id, "split": "test",
                                                     "versions": versions})
    assert elsewhere.status_code == 400
    assert "no finished (succeeded) eval run on snapshot" in elsewhere.json()["detail"]
    assert elsewhere.json()["field"] == "versions"
    order = client.get("/api/v1/side-by-side/", {"snapshot": a.snapshot_id, "split": "train", "versions": versions,
                                                 "order": "sideways"})
    assert order.status_code == 400 and "order" in order.json()


def test_only_people_who_may_view_eval_runs_read_it(runs):
    _, a, b = runs
    response = client_for(RaterFactory()).get("/api/v1/side-by-side/", {
        "snapshot": a.snapshot_id, "split": "train", "versions": [a.model_version_id, b.model_version_id]})
    assert response.status_code == 403


# --- the admin page -----------------------------------------------------------------------------


def test_the_admin_page_shows_sides_sign_outputs_and_rating_links(runs, client):
    _, a, b = runs
    signed_in_client(client, EngineerFactory())
    url = reverse("admin:evaluation_evalrun_side_by_side")
    page = client.get(url, {"snapshot": a.snapshot_id, "split": "train",
                            "versions": [a.model_version_id, b.model_version_id, ""], "order": "-difference"})
    assert page.status_code == 200
    text = page.content.decode()
    assert "difference = B − A on BLEU (per input, 0-100 scale); positive: B scored higher than A" in text
    assert _in_input_order(b)[9].output in text and "(B − A: +40.0)" in text
    assert f'href="/admin/evaluation/evalrun/pairwise/?a={a.pk}&amp;b={b.pk}"' in text
    assert "(rater or reviewer role)" in text  # an engineer hands the link to raters


def test_the_admin_page_says_which_versions_lack_a_run(runs, client):
    _, a, b = runs
    signed_in_client(client, EngineerFactory())
    page = client.get(reverse("admin:evaluation_evalrun_side_by_side"),
                      {"snapshot": a.snapshot_id, "split": "test", "versions": [a.model_version_id,
                                                                                b.model_version_id]})
    assert page.status_code == 200
    assert "secret-prompted-model (model version" in page.content.decode()
    assert "no finished (succeeded) eval run on snapshot" in page.content.decode()


def test_the_eval_run_action_opens_the_selected_runs_side_by_side(runs, client):
    _, a, b = runs
    signed_in_client(client, EngineerFactory())
    response = client.post(reverse("admin:evaluation_evalrun_changelist"),
                           {"action": "side_by_side_selected", "_selected_action": [b.pk, a.pk]})
    assert response.status_code == 302
    assert response["Location"] == (f"{reverse('admin:evaluation_evalrun_side_by_side')}?snapshot="
                                    f"{a.snapshot_id}&split=train&versions={a.model_version_id}"
                                    f"&versions={b.model_version_id}")


def test_without_rating_criteria_the_page_links_to_adding_them_instead_of_rating(runs, client):
    dataset, a, b = runs
    dataset.rating_criteria.all().delete()
    signed_in_client(client, EngineerFactory())
    page = client.get(reverse("admin:evaluation_evalrun_side_by_side"),
                      {"snapshot": a.snapshot_id, "split": "train", "versions": [a.model_version_id,
                                                                                 b.model_version_id]})
    text = page.content.decode()
    assert "pairwise/?a=" not in text
    assert f'{reverse("admin:evaluation_ratingcriterion_add")}?dataset={dataset.pk}">add rating criteria</a>' in text


def test_the_paired_comparison_page_links_to_both_versions_side_by_side(runs, client):
    _, a, b = runs
    signed_in_client(client, EngineerFactory())
    page = client.get(reverse("admin:evaluation_evalrun_compare"), {"a": a.pk, "b": b.pk}).content.decode()
    assert (f'{reverse("admin:evaluation_evalrun_side_by_side")}?snapshot={a.snapshot_id}&amp;split=train'
            f'&amp;versions={a.model_version_id}&amp;versions={b.model_version_id}') in page


def test_someone_who_may_judge_pairs_gets_a_link_to_rate_them(runs, client):
    _, a, b = runs
    signed_in_client(client, UserFactory(is_staff=True, is_superuser=True))
    page = client.get(reverse("admin:evaluation_evalrun_side_by_side"),
                      {"snapshot": a.snapshot_id, "split": "train", "versions": [a.model_version_id,
                                                                                 b.model_version_id]})
    assert (f'<a class="ft-rate-pair" href="/admin/evaluation/evalrun/pairwise/?a={a.pk}&amp;b={b.pk}">'
            "rate A vs B (blind pairs)</a>") in page.content.decode()


def test_the_action_says_when_a_selected_run_is_not_the_one_shown(runs, client):
    _, a, b = runs
    newer = answer_split(b.model_version, b.snapshot, "train", "retrained")
    signed_in_client(client, EngineerFactory())
    response = client.post(reverse("admin:evaluation_evalrun_changelist"),
                           {"action": "side_by_side_selected", "_selected_action": [a.pk, b.pk]}, follow=True)
    assert (f"Eval run {b.pk} is not the newest succeeded run of secret-tuned-model on this split: eval run "
            f"{newer.pk} is shown.") in [str(m) for m in response.context["messages"]]
    same = client.post(reverse("admin:evaluation_evalrun_changelist"),
                       {"action": "side_by_side_selected", "_selected_action": [b.pk, newer.pk]}, follow=True)
    assert "all of one model version" in same.content.decode()


def test_the_admin_page_is_for_people_who_may_view_eval_runs(runs, client):
    signed_in_client(client, RaterFactory())
    assert client.get(reverse("admin:evaluation_evalrun_side_by_side")).status_code == 403


def test_the_admin_page_pages_keeping_the_order_and_filter(runs, client):
    _, a, b = runs
    signed_in_client(client, EngineerFactory())
    page = client.get(reverse("admin:evaluation_evalrun_side_by_side"), {
        "snapshot": a.snapshot_id, "split": "train", "versions": [a.model_version_id, b.model_version_id],
        "order": "-difference", "min_difference": "-30", "page_size": "3"}).content.decode()
    assert "8 within the difference range" in page and "Page 1 of 3." in page  # -30, -20, ..., +40
    assert (f'href="?snapshot={a.snapshot_id}&amp;split=train&amp;versions={a.model_version_id}&amp;versions='
            f'{b.model_version_id}&amp;order=-difference&amp;min_difference=-30&amp;page_size=3&amp;page=2" '
            'id="ft-next"') in page
