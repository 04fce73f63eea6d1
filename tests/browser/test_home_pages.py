"""Each role's home page in a real browser (Playwright driving Debian's Chromium): what it shows
(counts, comments, progress, verdicts, links) and the main task it starts, followed to its end."""
import pytest
from django.urls import reverse
from django.utils import timezone

from curation.models import Snapshot
from curation.workflow import reject_example
from evaluation.models import EvalRun, HumanRating, PairwiseJudgment
from tests.support.factories import (
    AnnotatorFactory,
    DatasetFactory,
    EngineerFactory,
    ExampleFactory,
    RaterFactory,
    ReviewerFactory,
    UserFactory,
    approved_snapshot,
    conversation,
    tiny_base_model,
    two_eval_runs,
)
from training.models import TrainingRun

pytestmark = pytest.mark.django_db(transaction=True)
WIDE = {"width": 1400, "height": 900}  # the trial's screen


def words(page, selector: str) -> str:
    """The text shown in ``selector``, its white space (table cells, line breaks) read as single spaces."""
    return " ".join(page.inner_text(selector).split())


def test_annotator_home_fixes_a_rejected_example_with_write_next(signed_in, live_server):
    dataset = DatasetFactory(name="venues")
    ann = AnnotatorFactory(username="ann")
    rejected = ExampleFactory(dataset=dataset, author=ann, messages=conversation("name: Aromi", "Aromi."))
    reject_example(rejected, by=ReviewerFactory(), comment="Say what it is.")
    ExampleFactory(dataset=dataset, author=UserFactory(), assignee=ann, status="draft",
                   messages=conversation("name: Bibimbap", ""))

    page = signed_in(ann)
    assert page.title() == "Home | ftplatform"
    assert page.inner_text("#ft-annotator-counts") == "2 waiting for you: 1 assigned, 1 rejected"
    rows = page.inner_text("#ft-home-annotator table")
    assert "Say what it is." in rows and "(assigned)" in rows
    assert page.locator("#ft-home-reviewer, #ft-home-engineer, #ft-home-rater").count() == 0

    # Write next opens the oldest waiting example (the rejected one) with the reviewer's comment; its editor
    # saves it back to review.
    with page.expect_navigation():
        page.click("#ft-write-next")
    assert page.url.endswith(reverse("admin:curation_example_change", args=[rejected.pk]))
    assert "Say what it is." in page.inner_text("#content")
    with page.expect_navigation():
        page.click("text=Edit conversation")
    assert page.url.endswith(reverse("admin:curation_example_edit_messages", args=[rejected.pk]))
    page.fill("textarea[name=form-1-content]", "Aromi is a coffee shop.")
    with page.expect_navigation():
        page.keyboard.press("Control+Enter")
    rejected.refresh_from_db()
    assert (rejected.status, rejected.output_text) == ("submitted", "Aromi is a coffee shop.")

    page.goto(f"{live_server.url}/admin/")
    assert page.inner_text("#ft-annotator-counts") == "1 waiting for you: 1 assigned, 0 rejected"


def test_annotator_example_list_is_paged_and_one_line_per_example(signed_in, live_server):
    ann = AnnotatorFactory()
    dataset = DatasetFactory()
    for i in range(60):
        ExampleFactory(dataset=dataset, author=ann, messages=conversation(
            f"name: Place {i}, " + "eatType: restaurant, food: Italian, area: riverside, " * 8, "A long answer. " * 30))
    page = signed_in(ann)
    page.set_viewport_size(WIDE)
    page.goto(f"{live_server.url}{reverse('admin:curation_example_changelist')}")
    assert page.locator("#result_list tbody tr").count() == 25
    assert "60 examples" in page.inner_text(".paginator")
    row_heights = page.eval_on_selector_all("#result_list tbody tr", "rows => rows.map(r => r.offsetHeight)")
    assert max(row_heights) < 40  # one line each: the trial's rows made a 16,000 px page
    assert page.evaluate("document.documentElement.scrollHeight") < 2000
    cell = page.locator("#result_list td.field-output_preview .ft-cell").first
    assert cell.inner_text().endswith("…") and cell.get_attribute("title").startswith("A long answer. A long answer.")


def test_reviewer_home_reviews_next_and_opens_pending_snapshots(signed_in, live_server):
    rita = ReviewerFactory(username="rita")
    ann = AnnotatorFactory()
    venues = DatasetFactory(name="venues")
    first, _ = (ExampleFactory(dataset=venues, author=ann, messages=conversation(f"name: Place {i}", f"Place {i}."))
                for i in range(2))
    ExampleFactory(dataset=DatasetFactory(name="menus"), author=ann)
    snapshot = approved_snapshot(DatasetFactory(name="places"), [("name: X", "X is a pub.")], approve=False)

    page = signed_in(rita)
    page.set_viewport_size(WIDE)
    assert page.inner_text("#ft-review-left") == "3 examples left to review"
    per_dataset = words(page, "#ft-home-reviewer table")
    assert "menus 1 review next in menus" in per_dataset and "venues 2 review next in venues" in per_dataset
    assert page.inner_text("#ft-pending-snapshots").count("Review snapshot") == 1

    # Review next in venues: the oldest there, approved with the 'a' key.
    with page.expect_navigation():
        page.click("text=review next in venues")
    assert "Place 0." in page.inner_text("#ft-conversation")
    with page.expect_navigation():
        page.keyboard.press("a")
    first.refresh_from_db()
    assert first.status == "approved"
    page.goto(f"{live_server.url}/admin/")
    assert page.inner_text("#ft-review-left") == "2 examples left to review"

    # The pending snapshot's review page, then the snapshot list, whose Review link is on screen at 1400 px.
    with page.expect_navigation():
        page.click(f"text=Review snapshot {snapshot.pk}")
    assert page.url.endswith(reverse("admin:curation_snapshot_review", args=[snapshot.pk]))
    page.goto(f"{live_server.url}{reverse('admin:curation_snapshot_changelist')}")
    link = page.locator("#result_list td.field-review_link a", has_text="Review")
    box = link.bounding_box()
    assert box["x"] + box["width"] <= WIDE["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDE["width"]
    assert Snapshot.objects.get().status == "pending_review"


def test_engineer_home_shows_running_and_failed_jobs_and_verdicts(signed_in, live_server, tmp_path):
    dataset, (prompted, _) = two_eval_runs()
    base = tiny_base_model(tmp_path)
    running = TrainingRun.objects.create(snapshot=prompted.snapshot, base_model=base, hyperparameters={},
                                         status="running", step=40, total_steps=80)
    TrainingRun.objects.create(snapshot=prompted.snapshot, base_model=base, hyperparameters={}, status="failed",
                               error="CUDA out of memory\nTraceback (most recent call last): ...",
                               finished_at=timezone.now())
    EvalRun.objects.create(model_version=prompted.model_version, snapshot=prompted.snapshot, status="queued", total=10)

    page = signed_in(EngineerFactory())
    jobs = page.inner_text("#ft-running-jobs")
    assert f"Training run {running.pk} (running)" in jobs and "step 40/80" in jobs and "0/10 inputs" in jobs
    assert page.eval_on_selector("#ft-running-jobs progress", "bar => [bar.value, bar.max]") == [40, 80]
    failed = page.inner_text("#ft-failed-jobs")
    assert "CUDA out of memory" in failed and "Traceback" not in failed
    verdicts = page.inner_text("#ft-verdicts")
    assert "venues" in verdicts and "not enough evidence" in verdicts
    assert page.locator("#ft-all-pages[open] a", has_text="Training runs").count() == 1

    # The verdict opens the decision report; the running job opens its page, which has nothing to save.
    with page.expect_navigation():
        page.click("#ft-verdicts a")
    assert page.inner_text("h1") == "Decision report: venues"
    page.go_back()
    with page.expect_navigation():
        page.click(f"text=Training run {running.pk} (running)")
    assert "40/80" in page.inner_text("#content")
    assert page.locator("input[name=_save]").count() == 0


def test_rater_home_links_each_queue_and_the_counts_follow(signed_in, live_server):
    dataset, (run_a, run_b) = two_eval_runs()
    n = run_a.predictions.count()
    rater = RaterFactory()
    page = signed_in(rater)
    assert words(page, "#ft-likert-queues") == f"Rate venues {2 * n} left"
    assert words(page, "#ft-pairwise-queues") == f"Compare pairs: venues [train] #1 {n} left"
    assert "secret" not in page.content()  # blind: no model version is named
    assert page.locator("#ft-home-annotator, #ft-home-reviewer, #ft-home-engineer").count() == 0

    # Likert: score both criteria from the keyboard.
    with page.expect_navigation():
        page.click("text=Rate venues")
    page.keyboard.press("4")
    page.keyboard.press("5")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert HumanRating.objects.filter(rater=rater).count() == 2
    # Pairwise: the left output is better.
    page.goto(f"{live_server.url}/admin/")
    assert words(page, "#ft-likert-queues") == f"Rate venues {2 * n - 1} left"
    with page.expect_navigation():
        page.click("text=Compare pairs: venues [train] #1")
    with page.expect_navigation():
        page.keyboard.press("1")
    assert PairwiseJudgment.objects.filter(rater=rater).count() == 1
    page.goto(f"{live_server.url}/admin/")
    assert words(page, "#ft-pairwise-queues") == f"Compare pairs: venues [train] #1 {n - 1} left"
