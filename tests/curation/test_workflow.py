import pytest

from curation.choices import ExampleStatus, ReviewDecision
from curation.workflow import approve_example, reject_example, submit_example
from ftplatform.errors import Conflict, NotAllowed, ServiceError
from tests.support.clients import client_for
from tests.support.factories import AnnotatorFactory, ExampleFactory, ReviewerFactory

pytestmark = pytest.mark.django_db


def test_reviewer_approves_and_the_decision_is_recorded():
    reviewer = ReviewerFactory()
    example = approve_example(ExampleFactory(), by=reviewer, comment="fine")
    assert example.status == ExampleStatus.APPROVED
    review = example.reviews.get()
    assert (review.reviewer, review.decision, review.comment) == (reviewer, ReviewDecision.APPROVE, "fine")


def test_reviewer_cannot_approve_own_example():
    reviewer = ReviewerFactory()
    example = ExampleFactory(author=reviewer)
    with pytest.raises(NotAllowed, match="an example they wrote"):
        approve_example(example, by=reviewer)
    example.refresh_from_db()
    assert example.status == ExampleStatus.SUBMITTED and not example.reviews.exists()


def test_user_without_review_permission_cannot_approve():
    with pytest.raises(NotAllowed, match="not a reviewer"):
        approve_example(ExampleFactory(), by=AnnotatorFactory())


def test_reject_requires_a_comment():
    with pytest.raises(ServiceError, match="comment"):
        reject_example(ExampleFactory(), by=ReviewerFactory(), comment="  ")


def test_rejected_example_can_be_resubmitted():
    example = reject_example(ExampleFactory(), by=ReviewerFactory(), comment="typo in output")
    example = submit_example(example, by=example.author)
    assert example.status == ExampleStatus.SUBMITTED


def test_decision_on_a_stale_version_is_refused():
    example = ExampleFactory()
    stale_version = example.version
    submit_example(reject_example(example, by=ReviewerFactory(), comment="fix"), by=example.author)
    with pytest.raises(Conflict, match="changed since you loaded it"):
        approve_example(example, by=ReviewerFactory(), expected_version=stale_version)


def test_approving_an_approved_example_is_a_conflict():
    example = approve_example(ExampleFactory(), by=ReviewerFactory())
    with pytest.raises(Conflict, match="is approved"):
        approve_example(example, by=ReviewerFactory())


def test_dataset_needing_two_approvals_waits_for_a_second_reviewer():
    example = ExampleFactory(dataset__approvals_required=2)
    first, second = ReviewerFactory(), ReviewerFactory()

    example = approve_example(example, by=first)
    assert example.status == ExampleStatus.SUBMITTED
    with pytest.raises(Conflict, match="already approved it"):
        approve_example(example, by=first)
    example = approve_example(example, by=second)
    assert example.status == ExampleStatus.APPROVED


def test_approvals_from_an_earlier_round_do_not_count_after_a_rejection():
    example = ExampleFactory(dataset__approvals_required=2)
    reviewer = ReviewerFactory()
    approve_example(example, by=reviewer)
    reject_example(example, by=ReviewerFactory(), comment="wrong area")
    example = submit_example(example, by=example.author)
    assert example.review_round == 2
    example = approve_example(example, by=reviewer)
    assert example.status == ExampleStatus.SUBMITTED


def test_only_the_author_can_submit():
    example = reject_example(ExampleFactory(), by=ReviewerFactory(), comment="fix")
    with pytest.raises(NotAllowed, match="only its author or assignee"):
        submit_example(example, by=AnnotatorFactory())


def test_a_non_reviewer_is_refused_before_the_comment_is_checked():
    with pytest.raises(NotAllowed):
        reject_example(ExampleFactory(), by=AnnotatorFactory(), comment="")


def test_approving_own_example_is_403():
    reviewer = ReviewerFactory()
    example = ExampleFactory(author=reviewer)
    response = client_for(reviewer).post(f"/api/v1/examples/{example.pk}/approve/",
                                         {"expected_version": example.version}, format="json")
    assert response.status_code == 403 and "an example they wrote" in response.json()["detail"]


def test_stale_decision_is_409():
    example = ExampleFactory()
    client = client_for(ReviewerFactory())
    response = client.post(f"/api/v1/examples/{example.pk}/approve/", {"expected_version": example.version + 5},
                           format="json")
    assert response.status_code == 409
    example.refresh_from_db()
    assert example.status == ExampleStatus.SUBMITTED


def test_reject_without_comment_is_400():
    example = ExampleFactory()
    response = client_for(ReviewerFactory()).post(f"/api/v1/examples/{example.pk}/reject/",
                                                  {"expected_version": example.version}, format="json")
    assert response.status_code == 400 and "needs a comment" in response.json()["detail"]


def test_a_decision_without_the_version_it_was_made_on_is_400():
    example = ExampleFactory()
    response = client_for(ReviewerFactory()).post(f"/api/v1/examples/{example.pk}/approve/", {}, format="json")
    assert response.status_code == 400 and "expected_version" in response.json()
    example.refresh_from_db()
    assert example.status == ExampleStatus.SUBMITTED
