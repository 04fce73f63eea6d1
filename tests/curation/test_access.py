"""Who sees and changes which examples (curation.access), edit-and-approve, and hand-written examples."""
import pytest
from django.urls import reverse

from curation import access
from curation.choices import ExampleStatus, ReviewDecision
from curation.models import Example
from curation.work_queues import next_example_to_review
from curation.workflow import (
    approve_example,
    assign_example,
    create_example,
    edit_and_approve_example,
    edit_example,
    submit_example,
)
from ftplatform.errors import Conflict, NotAllowed, ServiceError
from tests.support.clients import client_for
from tests.support.factories import (
    AnnotatorFactory,
    DatasetFactory,
    EngineerFactory,
    ExampleFactory,
    ReviewerFactory,
    conversation,
)

pytestmark = pytest.mark.django_db


def visible_ids(user):
    return set(access.visible_examples(user).values_list("id", flat=True))


def test_annotators_see_their_own_and_assigned_examples_and_other_references_only_outside_blind_mode():
    ann, bob = AnnotatorFactory(), AnnotatorFactory()
    open_ds, blind_ds = DatasetFactory(), DatasetFactory(blind_annotation=True)
    mine = ExampleFactory(dataset=open_ds, author=ann, messages=conversation("name: A", "one"))
    same_input = ExampleFactory(dataset=open_ds, author=bob, messages=conversation("name: A", "two"))
    other_input = ExampleFactory(dataset=open_ds, author=bob, messages=conversation("name: B", "three"))
    assigned = ExampleFactory(dataset=open_ds, author=bob, assignee=ann, messages=conversation("name: C", "four"))
    blind_mine = ExampleFactory(dataset=blind_ds, author=ann, messages=conversation("name: A", "one"))
    blind_same_input = ExampleFactory(dataset=blind_ds, author=bob, messages=conversation("name: A", "two"))

    assert visible_ids(ann) == {mine.pk, same_input.pk, assigned.pk, blind_mine.pk}
    assert other_input.pk not in visible_ids(ann) and blind_same_input.pk not in visible_ids(ann)
    assert visible_ids(EngineerFactory()) == set(Example.objects.values_list("id", flat=True))


def test_reviewers_see_and_decide_only_in_the_datasets_they_review():
    rita, sam = ReviewerFactory(), ReviewerFactory()
    theirs, everyones = DatasetFactory(), DatasetFactory()
    theirs.reviewers.add(sam)
    in_theirs, in_everyones = ExampleFactory(dataset=theirs), ExampleFactory(dataset=everyones)

    assert visible_ids(rita) == {in_everyones.pk}
    assert visible_ids(sam) == {in_theirs.pk, in_everyones.pk}
    with pytest.raises(NotAllowed, match="does not review dataset"):
        approve_example(in_theirs, by=rita)
    assert next_example_to_review(rita) == in_everyones
    assert approve_example(in_theirs, by=sam).status == ExampleStatus.APPROVED


def test_edit_and_approve_replaces_the_conversation_and_approves_the_new_version():
    example = ExampleFactory()
    reviewer = ReviewerFactory()
    fixed = conversation("name: Place 0", "Place 0 is a pub.")

    approved = edit_and_approve_example(example, by=reviewer, messages=fixed, expected_version=example.version)

    assert approved.status == ExampleStatus.APPROVED and approved.messages == fixed
    review = approved.reviews.get()
    assert (review.decision, review.reviewer, review.review_round) == (ReviewDecision.APPROVE, reviewer, 2)
    assert review.example_version == example.version + 1  # the edited version, not the one submitted
    reasons = list(approved.history.order_by("history_id").values_list("history_change_reason", flat=True))
    assert reasons[-2:] == ["edited (was submitted; back to review)", "approved (1/1)"]


def test_edit_and_approve_waits_for_the_other_approvals_and_is_all_or_nothing():
    example = ExampleFactory(dataset=DatasetFactory(approvals_required=2))
    reviewer = ReviewerFactory()
    half = edit_and_approve_example(example, by=reviewer, messages=conversation("q", "better"),
                                    expected_version=example.version)
    assert half.status == ExampleStatus.SUBMITTED and half.reviews.count() == 1

    before = (half.version, half.messages)
    with pytest.raises(ServiceError, match="message 2"):
        edit_and_approve_example(half, by=ReviewerFactory(), messages=[{"role": "user", "content": "q"},
                                                                       {"role": "assistant", "content": 3}],
                                 expected_version=half.version)
    half.refresh_from_db()
    assert (half.version, half.messages) == before and half.reviews.count() == 1


def test_annotators_and_engineers_cannot_edit_and_approve():
    example = ExampleFactory()
    for user in (example.author, AnnotatorFactory(), EngineerFactory()):
        with pytest.raises(NotAllowed):
            edit_and_approve_example(example, by=user, messages=conversation("q", "x"),
                                     expected_version=example.version)


def test_create_example_starts_a_draft_or_submits_and_refuses_duplicates():
    dataset, ann = DatasetFactory(), AnnotatorFactory()
    draft = create_example(dataset, by=ann, messages=conversation("q", "a"))
    assert (draft.status, draft.author, draft.version) == (ExampleStatus.DRAFT, ann, 1)
    assert draft.history.get().history_change_reason == "created"
    assert create_example(dataset, by=ann, messages=conversation("q", "b"), submit=True).status == "submitted"
    with pytest.raises(Conflict, match=f"example {draft.pk}"):
        create_example(dataset, by=ann, messages=conversation("q", "a"))
    with pytest.raises(Conflict, match="another example you cannot see"):  # never names what it hides
        create_example(dataset, by=AnnotatorFactory(), messages=conversation("q", "a"))
    with pytest.raises(NotAllowed):
        create_example(dataset, by=ReviewerFactory(), messages=conversation("q", "c"))


def test_admin_add_page_writes_a_draft_with_the_structured_editor(client):
    dataset, ann = DatasetFactory(), AnnotatorFactory()
    client.force_login(ann)
    form = {"dataset": dataset.pk, "form-TOTAL_FORMS": 3, "form-INITIAL_FORMS": 0,
            "form-0-role": "user", "form-0-content": "name: Aromi",
            "form-1-role": "assistant", "form-1-content": "Aromi is a pub.", "form-2-role": "user"}
    response = client.post(reverse("admin:curation_example_add"), form)
    example = Example.objects.get()
    assert response.status_code == 302 and response.url == reverse("admin:curation_example_change", args=[example.pk])
    assert (example.status, example.author, example.messages[-1]["content"]) == ("draft", ann, "Aromi is a pub.")

    client.post(reverse("admin:curation_example_submit", args=[example.pk]), {"expected_version": 1})
    example.refresh_from_db()
    assert example.status == ExampleStatus.SUBMITTED


def test_admin_review_page_approves_rejects_with_a_comment_and_skips(client):
    first, second = ExampleFactory(), ExampleFactory()
    reviewer = ReviewerFactory()
    client.force_login(reviewer)

    opened = client.get(reverse("admin:curation_example_review_next"))
    assert opened.url == reverse("admin:curation_example_review", args=[first.pk])
    page = client.get(opened.url).content.decode()
    assert "Approve [a]" in page and "Edit and approve [e]" in page and first.messages[-1]["content"] in page

    refused = client.post(opened.url, {"decision": "reject", "comment": " ", "expected_version": first.version},
                          follow=True)
    assert "needs a comment" in refused.content.decode()
    skipped = client.post(opened.url, {"decision": "skip", "expected_version": first.version})
    assert client.get(skipped.url).url == reverse("admin:curation_example_review", args=[second.pk])

    client.post(reverse("admin:curation_example_review", args=[second.pk]),
                {"decision": "reject", "comment": "wrong area", "expected_version": second.version})
    client.post(reverse("admin:curation_example_review", args=[first.pk]),
                {"decision": "approve", "expected_version": first.version})
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (ExampleStatus.APPROVED, ExampleStatus.REJECTED)
    assert second.reviews.get().comment == "wrong area"


def test_admin_review_page_refuses_a_stale_decision(client):
    example = ExampleFactory()
    client.force_login(ReviewerFactory())
    response = client.post(reverse("admin:curation_example_review", args=[example.pk]),
                           {"decision": "approve", "expected_version": example.version - 1 or 99}, follow=True)
    assert "changed since you loaded it" in response.content.decode()
    example.refresh_from_db()
    assert example.status == ExampleStatus.SUBMITTED


def test_assigning_an_example_lets_the_annotator_see_fix_and_submit_it():
    bob = AnnotatorFactory()
    example = ExampleFactory(status=ExampleStatus.DRAFT)
    assert example.pk not in visible_ids(bob)
    with pytest.raises(NotAllowed):
        assign_example(example, to=bob, by=ReviewerFactory())
    with pytest.raises(ServiceError, match="annotator role"):
        assign_example(example, to=EngineerFactory(), by=EngineerFactory())

    assigned = assign_example(example, to=bob, by=EngineerFactory())
    assert assigned.assignee == bob and example.pk in visible_ids(bob)
    fixed = edit_example(assigned, by=bob, messages=conversation("q", "fixed"), expected_version=assigned.version)
    assert submit_example(fixed, by=bob).status == ExampleStatus.SUBMITTED
    assert assigned.history.filter(history_change_reason=f"assigned to {bob}").exists()


def test_admin_assign_action_asks_for_the_annotator(client):
    ann, example = AnnotatorFactory(), ExampleFactory()
    client.force_login(EngineerFactory())
    url = reverse("admin:curation_example_changelist")
    page = client.post(url, {"action": "assign_selected", "_selected_action": [example.pk]})
    assert ann.username in page.content.decode()
    client.post(url, {"action": "assign_selected", "_selected_action": [example.pk], "confirm": "yes",
                      "assignee": ann.pk})
    example.refresh_from_db()
    assert example.assignee == ann


def test_an_assignee_cannot_approve_and_only_annotators_are_assigned():
    reviewer, example = ReviewerFactory(), ExampleFactory()
    with pytest.raises(ServiceError, match="not an annotator"):
        assign_example(example, to=reviewer, by=EngineerFactory())
    annotator_reviewer = AnnotatorFactory()
    annotator_reviewer.groups.add(*reviewer.groups.all())
    assign_example(example, to=annotator_reviewer, by=EngineerFactory())
    with pytest.raises(NotAllowed, match="wrote or are assigned"):
        approve_example(example, by=annotator_reviewer)


def test_edit_and_approve_by_an_assigned_reviewer_is_refused():
    annotator_reviewer = AnnotatorFactory()
    annotator_reviewer.groups.add(*ReviewerFactory().groups.all())
    example = ExampleFactory()
    assign_example(example, to=annotator_reviewer, by=EngineerFactory())
    response = client_for(annotator_reviewer).post(f"/api/v1/examples/{example.pk}/edit-and-approve/", {
        "messages": conversation("q", "mine"), "expected_version": example.version + 1}, format="json")
    assert response.status_code == 403
