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
