"""The shared layer's management commands."""
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

pytestmark = pytest.mark.django_db


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


@pytest.mark.parametrize("command, option", [("train", "--hyperparameters"), ("evaluate", "--generation"),
                                             ("create_snapshot", "--fractions"), ("demo", "--hyperparameters"),
                                             ("learning_curve", "--hyperparameters"),
                                             ("learning_curve", "--generation")])
def test_a_json_option_that_is_not_json_names_the_option_the_error_and_the_place(command, option):
    """The trial read "argument --hyperparameters: invalid loads value: ..."."""
    with pytest.raises(CommandError) as raised:
        call_command(command, f"{option}={{'epochs': 2}}")
    message = str(raised.value)
    assert message.startswith(f"Error: argument {option}: not valid JSON: Expecting property name enclosed in "
                              "double quotes at line 1 column 2")
    assert "put the whole value in single quotes" in message
    assert message.endswith("    {'epochs': 2}\n     ^")
    assert "loads" not in message


def test_a_json_option_must_be_an_object():
    with pytest.raises(CommandError, match=r'argument --hyperparameters: expected a JSON object such as '
                                           r'\{"epochs": 2\}, got an array: \[2\]'):
        call_command("train", "--hyperparameters=[2]")
