import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from curation.choices import ExampleStatus
from curation.formats import content_hash, input_hash
from curation.models import Dataset, Example
from curation.snapshots import approve_snapshot, create_snapshot
from evaluation.models import EvalRun, Prediction, RatingCriterion
from ftplatform.roles import ANNOTATOR, ENGINEER, RATER, REVIEWER
from training.models import BaseModel, ModelVersion


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


def approved_example(dataset, user: str, assistant: str) -> Example:
    """An approved example of ``dataset`` asking ``user`` and answering ``assistant``."""
    return ExampleFactory(dataset=dataset, messages=conversation(user, assistant), status=ExampleStatus.APPROVED)


def approved_places(dataset, count: int) -> list[Example]:
    """``count`` approved examples "name: Place <i>, eatType: pub, area: riverside <i>" -> "Place <i> is a pub."."""
    return [approved_example(dataset, f"name: Place {i}, eatType: pub, area: riverside {i}", f"Place {i} is a pub.")
            for i in range(count)]


def approved_snapshot(dataset, pairs, *, approve: bool = True):
    """A snapshot of ``dataset`` with one approved example per (user text, answer) in ``pairs`` (no
    system message of their own), created by an engineer and, with ``approve``, approved by a reviewer."""
    for prompt, answer in pairs:
        ExampleFactory(dataset=dataset, status=ExampleStatus.APPROVED, messages=conversation(prompt, answer))
    snapshot = create_snapshot(dataset, by=EngineerFactory())[0]
    return approve_snapshot(snapshot, by=ReviewerFactory()) if approve else snapshot


def snapshot_of(records, approve=True, **dataset_fields):
    """A snapshot of ``records`` (E2E chat records) in a new dataset whose system prompt is the first
    record's system message, with ``dataset_fields`` (language, regex_checks, ...) set before freezing."""
    dataset = DatasetFactory(**{"system_prompt": records[0]["messages"][0]["content"], **dataset_fields})
    author = AnnotatorFactory()
    seen = set()
    for record in records:
        key = str(record["messages"])
        if key not in seen:
            seen.add(key)
            ExampleFactory(dataset=dataset, messages=record["messages"], status=ExampleStatus.APPROVED, author=author)
    snapshot, _ = create_snapshot(dataset, by=EngineerFactory())
    if approve:
        snapshot = approve_snapshot(snapshot, by=ReviewerFactory())
    return snapshot


# Hyperparameters that train the tiny model in a few seconds: three steps, a loss logged at each.
TINY_HYPERPARAMETERS = {"max_steps": 3, "batch_size": 4, "logging_steps": 1, "max_eval_examples": 4}


def tiny_base_model(folder) -> BaseModel:
    return BaseModel.objects.create(name=f"tiny-{folder.name}", source_kind="local_folder", source=str(folder))


def engineer_and_reviewer(**kwargs):
    """A user in both the engineer and the reviewer groups (creates snapshots and reviews others')."""
    user = EngineerFactory(**kwargs)
    user.groups.add(Group.objects.get(name=REVIEWER))
    return user


def unloadable_base_model(name: str = "tiny") -> BaseModel:
    """A base model row whose weights are nowhere (a folder that does not exist): for tests of
    rows, reports and pages that never load a model."""
    return BaseModel.objects.create(name=name, source_kind="local_folder", source="/nonexistent")


def answer_split(version: ModelVersion, snapshot, split: str, label: str) -> EvalRun:
    """A succeeded eval run of ``version`` on ``snapshot``'s ``split`` whose outputs read "<label> says <input>"."""
    run = EvalRun.objects.create(model_version=version, snapshot=snapshot, split=split, status="succeeded")
    for item in snapshot.items.filter(split=split):
        Prediction.objects.get_or_create(
            eval_run=run, input_hash=item.input_hash,
            defaults={"input_messages": item.messages[:-1], "references": [item.messages[-1]["content"]],
                      "output": f"{label} says {item.messages[0]['content']}", "latency_ms": 1.0,
                      "prompt_tokens": 3, "output_tokens": 4})
    return run


def two_eval_runs(examples: int = 12, **settings):
    """A dataset "venues" of ``examples`` examples (80/10/10 of distinct inputs: 10 train inputs of
    12, 24 of 30) with two rating criteria (correctness, fluency) and two succeeded eval runs on its
    snapshot's train split, one per model version ("secret-prompted-model", then
    "secret-tuned-model"), whose outputs read "<prompted|tuned> says name: Venue <i>" (two digits:
    "Venue 1" inside "Venue 12" would make near-duplicate inputs, which the split keeps together).
    Its primary metric is BLEU unless ``settings`` (Dataset fields: primary_metric, regex_checks, ...)
    say otherwise. Returns ``(dataset, [prompted_run, tuned_run])``."""
    dataset = DatasetFactory(name="venues", **{"primary_metric": "bleu", **settings})
    snapshot = approved_snapshot(dataset, [(f"name: Venue {i:02d}", f"Venue {i:02d} is a pub.")
                                           for i in range(examples)])
    for name in ("correctness", "fluency"):
        RatingCriterion.objects.create(dataset=dataset, name=name, anchors={"1": "wrong", "5": "perfect"})
    base = unloadable_base_model()
    runs = []
    for label in ("prompted", "tuned"):
        version = ModelVersion.objects.create(name=f"secret-{label}-model", kind="prompted_base", base_model=base,
                                              system_prompt=label)
        runs.append(answer_split(version, snapshot, "train", label))
    return dataset, runs


def _answer_as_tuned(run: EvalRun) -> None:
    # Right (and confident) on three inputs of four, wrong and unsure on the rest.
    for index, prediction in enumerate(Prediction.objects.filter(eval_run=run).order_by("id")):
        right = index % 4 != 0
        prediction.output = prediction.references[0] if right else "no idea"
        prediction.mean_logprob = -0.1 if right else -3.0
        prediction.scores = {"bleu": 100.0 if right else 0.0}
        prediction.save()


def tuned_vs_prompted_runs(examples: int = 12, validation: bool = False, **settings):
    """Run A: a prompted baseline priced per token, scoring 20 on every input; run B: a fine-tuned
    version right on three inputs of four (bleu 100, else 0), priced per GPU-hour, confident where it
    is right (mean log-probability -0.1, else -3.0). Both on the train split of two_eval_runs'
    dataset of ``examples`` examples; with ``validation`` both versions are also evaluated alike on
    the validation split (where routing thresholds are chosen). ``settings`` as in two_eval_runs."""
    dataset, (prompted, tuned) = two_eval_runs(examples, **settings)
    ModelVersion.objects.filter(pk=prompted.model_version_id).update(
        price_per_million_input_tokens=2.5, price_per_million_output_tokens=10.0)
    ModelVersion.objects.filter(pk=tuned.model_version_id).update(kind="lora_adapter", price_per_gpu_hour=1.0)
    runs = [(prompted, tuned)]
    if validation:
        runs.append(tuple(answer_split(run.model_version, run.snapshot, "validation", label)
                          for run, label in ((prompted, "prompted"), (tuned, "tuned"))))
    for baseline_run, tuned_run in runs:
        _answer_as_tuned(tuned_run)
        Prediction.objects.filter(eval_run=baseline_run).update(scores={"bleu": 20.0})
        for run in (baseline_run, tuned_run):
            run.metrics = {"latency_p50_ms": 900.0, "latency_p95_ms": 1200.0, "mean_input_tokens": 60,
                           "mean_output_tokens": 20, "bleu": 0.0}
            run.save()
    return dataset, prompted, tuned


def as_if_another_database_reused(model, row_id, monkeypatch):
    """The next ``model.objects.create`` gets id ``row_id``: what a second database sharing this
    artifacts root hands out for its own row."""
    create = model.objects.create
    monkeypatch.setattr(model.objects, "create", lambda **fields: create(id=row_id, **fields))
