"""Management commands: thin callers that report errors as messages, not tracebacks."""
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from curation.models import Example
from tests.factories import DatasetFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_import_command_lists_bad_lines_and_imports_nothing(tmp_path):
    dataset, user = DatasetFactory(), UserFactory()
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
                    + "\n" + json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n")
    with pytest.raises(CommandError, match="1 invalid line"):
        call_command("import_examples", str(path), dataset=dataset.name, username=user.username)
    assert Example.objects.count() == 0


def test_import_command_with_skip_invalid(tmp_path, capsys):
    dataset, user = DatasetFactory(), UserFactory()
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
        call_command("import_examples", str(path), dataset="nope", username=UserFactory().username)


def test_create_dataset_is_undone_when_its_first_import_is_refused(tmp_path):
    from curation.models import Dataset

    path = tmp_path / "bad.jsonl"
    path.write_text("{oops\n")
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_examples", str(path), dataset="fresh", username=UserFactory().username,
                     create_dataset=True)
    assert not Dataset.objects.filter(name="fresh").exists()


def test_create_dataset_refuses_a_name_that_does_not_fit(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    with pytest.raises(CommandError, match="name: Ensure this value has at most 200 characters"):
        call_command("import_examples", str(path), dataset="x" * 300, username=UserFactory().username,
                     format="prompt_completion_jsonl", create_dataset=True)
