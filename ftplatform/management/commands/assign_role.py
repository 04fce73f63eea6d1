"""Put a user in a role's group (annotator, reviewer, engineer), creating the user if asked."""
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from ftplatform.roles import ROLE_PERMISSIONS


class Command(BaseCommand):
    help = "Give a user a role (its group's permissions) and admin access; --create makes the user first."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("role", choices=sorted(ROLE_PERMISSIONS))
        parser.add_argument("--create", action="store_true", help="create the user when missing")
        parser.add_argument("--password", help="set this password (otherwise the password is left as it is)")

    @transaction.atomic
    def handle(self, username, role, create, password, **options):
        users = get_user_model().objects
        if create:
            user, created = users.get_or_create(username=username)
        else:
            user, created = users.filter(username=username).first(), False
            if user is None:
                raise CommandError(f"no user named {username!r}; add --create to make one")
        user.is_staff = True  # roles work in the admin
        if password:
            user.set_password(password)
        elif created:
            user.set_unusable_password()
        user.save()
        user.groups.add(Group.objects.get(name=role))
        roles = ", ".join(sorted(user.groups.values_list("name", flat=True)))
        self.stdout.write(f"{'created ' if created else ''}{username}: roles {roles}")
