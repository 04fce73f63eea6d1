from django.core.management.base import BaseCommand, CommandError

from curation.choices import ExampleStatus
from curation.models import Example
from curation.workflow import approve_examples
from ftplatform.cli import user_named


class Command(BaseCommand):
    help = "Approve every submitted example of a dataset as a reviewer (each decision is recorded)."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--as", dest="username", required=True, help="The reviewer.")
        parser.add_argument("--comment", default="")

    def handle(self, *args, dataset, username, comment, **options):
        reviewer = user_named(username)
        examples = Example.objects.filter(dataset__name=dataset, status=ExampleStatus.SUBMITTED)
        approved, problems = approve_examples(examples.iterator(), by=reviewer, comment=comment)
        self.stdout.write(f"approved {approved} example(s) of {dataset!r} as {reviewer}")
        for problem in problems:
            self.stderr.write(problem)
        if problems and not approved:
            raise CommandError(f"{len(problems)} example(s) could not be approved")
