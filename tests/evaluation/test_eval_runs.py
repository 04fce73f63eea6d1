"""Starting eval runs and their prompted baselines over the API and the evaluate command: what they
need (an approved snapshot, the role) and what they create once."""
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from evaluation.models import EvalRun
from tests.support.clients import client_for
from tests.support.factories import (
    EngineerFactory,
    ExampleFactory,
    RaterFactory,
    ReviewerFactory,
    snapshot_of,
    tiny_base_model,
    unloadable_base_model,
)
from training.model_versions import prompted_model_version

pytestmark = pytest.mark.django_db


def test_eval_run_on_a_pending_snapshot_is_400(tiny_model_dir, e2e_records):
    snapshot = snapshot_of(e2e_records[:20], approve=False)
    version, _ = prompted_model_version(tiny_base_model(tiny_model_dir), "Describe it.", by=EngineerFactory())
    response = client_for(EngineerFactory()).post("/api/v1/eval-runs/", {"model_version": version.pk,
                                                                     "snapshot": snapshot.pk}, format="json")
    assert response.status_code == 400 and "approve" in response.json()["detail"]
    assert not EvalRun.objects.exists()


def test_prompted_base_version_is_created_once(tiny_model_dir):
    base = tiny_base_model(tiny_model_dir)
    client = client_for(EngineerFactory())
    body = {"base_model": base.pk, "system_prompt": "Answer with SQL."}
    first = client.post("/api/v1/model-versions/", body, format="json")
    again = client.post("/api/v1/model-versions/", body, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] and first.json()["kind"] == "prompted_base"


def test_the_evaluate_command_checks_the_role_before_creating_a_prompted_version():
    """--prompted-base used to create the prompted model version for any --as user, before the
    evaluation's own permission check refused them."""
    from curation.choices import ExampleStatus
    from curation.snapshots import approve_snapshot, create_snapshot
    from training.models import ModelVersion

    example = ExampleFactory(status=ExampleStatus.APPROVED)
    snapshot, _ = create_snapshot(example.dataset, by=EngineerFactory())
    approve_snapshot(snapshot, by=ReviewerFactory(), comment="")
    rater = RaterFactory()
    with pytest.raises(CommandError, match=f"{rater.username} may not add model versions"):
        call_command("evaluate", prompted_base=True, base_model=unloadable_base_model().name, snapshot=snapshot.pk,
                     username=rater.username)
    assert not ModelVersion.objects.exists()
