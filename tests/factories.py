import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from curation.choices import ExampleStatus
from curation.formats import content_hash, input_hash
from curation.models import Dataset, Example
from ftplatform.roles import ANNOTATOR, ENGINEER, RATER, REVIEWER
from training.models import BaseModel


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")


def _in_group(role: str):
    """A post-generation hook putting the user in the group of ``role`` (created by ftplatform's roles migration)."""
    return factory.PostGeneration(
        lambda user, create, extracted, **kwargs: user.groups.add(Group.objects.get(name=role)))


class AnnotatorFactory(UserFactory):
    username = factory.Sequence(lambda n: f"annotator{n}")
    is_staff = True
    role = _in_group(ANNOTATOR)


class ReviewerFactory(UserFactory):
    username = factory.Sequence(lambda n: f"reviewer{n}")
    is_staff = True
    role = _in_group(REVIEWER)


class EngineerFactory(UserFactory):
    username = factory.Sequence(lambda n: f"engineer{n}")
    is_staff = True
    role = _in_group(ENGINEER)


class RaterFactory(UserFactory):
    username = factory.Sequence(lambda n: f"rater{n}")
    is_staff = True
    role = _in_group(RATER)


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dataset

    name = factory.Sequence(lambda n: f"dataset-{n}")
    system_prompt = "Describe the restaurant in one sentence."


def conversation(user: str, assistant: str, system: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


class ExampleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Example

    dataset = factory.SubFactory(DatasetFactory)
    messages = factory.Sequence(lambda n: conversation(f"name: Place {n // 2}", f"Place {n // 2} is nice, take {n}."))
    content_hash = factory.LazyAttribute(lambda o: content_hash(o.messages))
    input_hash = factory.LazyAttribute(lambda o: input_hash(o.messages))
    status = ExampleStatus.SUBMITTED
    author = factory.SubFactory(AnnotatorFactory)


def tiny_base_model(folder) -> BaseModel:
    return BaseModel.objects.create(name=f"tiny-{folder.name}", source_kind="local_folder", source=str(folder))


def engineer_and_reviewer(**kwargs):
    """A user in both the engineer and the reviewer groups (creates snapshots and reviews others')."""
    user = EngineerFactory(**kwargs)
    user.groups.add(Group.objects.get(name=REVIEWER))
    return user
