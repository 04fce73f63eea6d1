"""Management commands: thin callers that report errors as messages, not tracebacks."""
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from curation.models import Example
from tests.support.factories import AnnotatorFactory, DatasetFactory, EngineerFactory

pytestmark = pytest.mark.django_db


def test_import_command_lists_bad_lines_and_imports_nothing(tmp_path):
    dataset, user = DatasetFactory(), AnnotatorFactory()
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
                    + "\n" + json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n")
    with pytest.raises(CommandError, match="1 invalid line"):
        call_command("import_examples", str(path), dataset=dataset.name, username=user.username)
    assert Example.objects.count() == 0


def test_import_command_with_skip_invalid(tmp_path, capsys):
    dataset, user = DatasetFactory(), AnnotatorFactory()
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\nnot json\n")
    call_command("import_examples", str(path), dataset=dataset.name, username=user.username,
                 format="prompt_completion_jsonl", skip_invalid=True)
    assert "line 2: invalid JSON" in capsys.readouterr().out
    assert Example.objects.count() == 1


def test_unknown_user_and_dataset_are_named(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("")
    with pytest.raises(CommandError, match="no active user named 'ghost'"):
        call_command("import_examples", str(path), dataset="d", username="ghost")
    with pytest.raises(CommandError, match="no dataset named 'nope'"):
        call_command("import_examples", str(path), dataset="nope", username=AnnotatorFactory().username)


def test_create_dataset_is_undone_when_its_first_import_is_refused(tmp_path):
    from curation.models import Dataset

    path = tmp_path / "bad.jsonl"
    path.write_text("{oops\n")
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_examples", str(path), dataset="fresh", username=EngineerFactory().username,
                     create_dataset=True)
    assert not Dataset.objects.filter(name="fresh").exists()


def test_create_dataset_refuses_a_name_that_does_not_fit(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    with pytest.raises(CommandError, match="name: Ensure this value has at most 200 characters"):
        call_command("import_examples", str(path), dataset="x" * 300, username=EngineerFactory().username,
                     format="prompt_completion_jsonl", create_dataset=True)


def test_an_annotator_cannot_create_a_dataset_from_the_import_command(tmp_path):
    """--as used to bypass the role table here: any user could create a dataset."""
    from curation.models import Dataset

    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    annotator = AnnotatorFactory()
    with pytest.raises(CommandError, match=f"{annotator.username} may not create datasets "
                                           r"\(needs the 'curation.add_dataset' permission\)"):
        call_command("import_examples", str(path), dataset="fresh", username=annotator.username,
                     format="prompt_completion_jsonl", create_dataset=True)
    assert not Dataset.objects.exists() and not Example.objects.exists()


def test_the_evaluate_command_checks_the_role_before_creating_a_prompted_version():
    """--prompted-base used to create the prompted model version for any --as user, before the
    evaluation's own permission check refused them."""
    from curation.choices import ExampleStatus
    from curation.snapshots import approve_snapshot, create_snapshot
    from tests.support.factories import ExampleFactory, RaterFactory, ReviewerFactory, unloadable_base_model
    from training.models import ModelVersion

    example = ExampleFactory(status=ExampleStatus.APPROVED)
    snapshot, _ = create_snapshot(example.dataset, by=EngineerFactory())
    approve_snapshot(snapshot, by=ReviewerFactory(), comment="")
    rater = RaterFactory()
    with pytest.raises(CommandError, match=f"{rater.username} may not add model versions"):
        call_command("evaluate", prompted_base=True, base_model=unloadable_base_model().name, snapshot=snapshot.pk,
                     username=rater.username)
    assert not ModelVersion.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_train_evaluate_and_report_commands_compare_with_the_prompted_base(tiny_model_dir, e2e_records, capsys,
                                                                          run_jobs, settings):
    from tests.support.factories import snapshot_of, tiny_base_model
    from training.models import ModelVersion

    if settings.REDIS_URL:
        pytest.skip("the commands wait for a worker; covered with a worker process in test_pipeline")
    snapshot = snapshot_of(e2e_records[:40])
    base = tiny_base_model(tiny_model_dir)
    user = EngineerFactory()
    call_command("train", snapshot=snapshot.pk, base_model=base.name, username=user.username,
                 hyperparameters={"max_steps": 2, "batch_size": 4})
    tuned = ModelVersion.objects.get(kind="lora_adapter")
    call_command("evaluate", model_version=tuned.pk, snapshot=snapshot.pk, username=user.username,
                 generation={"max_new_tokens": 8})
    call_command("report", tuned.pk)
    assert "evaluate --prompted-base" in capsys.readouterr().out

    call_command("evaluate", prompted_base=True, base_model=base.name, snapshot=snapshot.pk, username=user.username,
                 generation={"max_new_tokens": 8})
    call_command("report", tuned.pk)
    out = capsys.readouterr().out
    # E2E outputs are free text: the snapshot's proposed primary metric is chrF.
    assert "chrF difference from the prompted base model" in out and snapshot.content_hash in out


def test_assign_role_creates_the_user_and_adds_the_group():
    from django.contrib.auth import get_user_model
    out = StringIO()
    call_command("assign_role", "alice", "annotator", create=True, password="pw-123456", stdout=out)
    call_command("assign_role", "alice", "reviewer", stdout=out)
    alice = get_user_model().objects.get(username="alice")
    assert alice.is_staff and alice.check_password("pw-123456")
    assert alice.has_perm("curation.add_example") and alice.has_perm("curation.review_example")
    assert not alice.has_perm("training.add_trainingrun")
    assert "roles annotator, reviewer" in out.getvalue()
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("assign_role", "nobody", "engineer")
