"""A LoRA model version as a Hugging Face Hub model repo: the adapter names its base model by Hub id, and the
model card carries the finished evaluations as model-index (provided by the evaluation app)."""
import json
from io import StringIO

import pytest
import yaml
from django.core.management import call_command
from django.utils import timezone

from evaluation.models import EvalRun
from ftplatform.errors import Conflict, NotAllowed, ServiceError
from ftplatform.jobrows import JobStatus
from tests.support.factories import AnnotatorFactory, DatasetFactory, EngineerFactory, approved_snapshot
from tests.support.tiny_model import build_random_adapter
from training.choices import ModelVersionKind
from training.exports import EXPORT_RECORD_FILE, read_export_record
from training.hub_export import export_hub_adapter
from training.models import BaseModel, ModelVersion, TrainingRun


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    return build_random_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter"))


@pytest.fixture
def version(adapter_dir, tiny_model_dir):
    snapshot = approved_snapshot(DatasetFactory(), [(f"name: Place {i}", f"Place {i} is nice.") for i in range(10)])
    base = BaseModel.objects.create(name="tiny", source_kind="local_folder", source=str(tiny_model_dir),
                                    hub_id="example-org/tiny-base", licence="Apache-2.0")
    run = TrainingRun.objects.create(snapshot=snapshot, base_model=base, hyperparameters={"lora_r": 4},
                                     status=JobStatus.SUCCEEDED, metrics={"train_loss": 1.5, "eval_loss": 1.7},
                                     environment={"device": "cpu", "torch": "2.x"})
    return ModelVersion.objects.create(name="tiny + LoRA (run 1)", kind=ModelVersionKind.LORA_ADAPTER,
                                       base_model=base, training_run=run, adapter_path=str(adapter_dir))


def evaluated(version, split="test", chrf=51.234, finished_at=None):
    return EvalRun.objects.create(
        model_version=version, snapshot=version.training_run.snapshot, split=split, status=JobStatus.SUCCEEDED,
        finished_at=finished_at or timezone.now(),
        metrics={"chrf": chrf, "bleu": 20.0, "rouge_l": 40.5, "n_inputs": 3, "latency_p50_ms": 12.0,
                 "confidence_intervals": {name: {"ci_low": 1.0, "ci_high": 2.0}
                                          for name in ("chrf", "bleu", "rouge_l")}})


def front_matter(folder):
    return yaml.safe_load((folder / "README.md").read_text(encoding="utf-8").split("---\n")[1])


@pytest.mark.django_db
def test_the_adapter_names_its_base_by_hub_id_and_the_card_carries_the_evaluations(version, tiny_model_dir, tmp_path):
    evaluated(version, chrf=10.0, finished_at=timezone.now() - timezone.timedelta(days=1))  # superseded
    latest = evaluated(version)
    evaluated(version, split="validation", chrf=60.0)
    EvalRun.objects.create(model_version=version, snapshot=version.training_run.snapshot, status=JobStatus.FAILED)
    folder = export_hub_adapter(version, by=EngineerFactory(), output_dir=tmp_path / "repo")

    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "example-org/tiny-base"
    record = read_export_record(folder)
    assert record["base_model_local_path"] == str(tiny_model_dir) and record["hub_id"] == "example-org/tiny-base"

    meta = front_matter(folder)
    assert meta["base_model"] == "example-org/tiny-base" and meta["license"] == "apache-2.0"
    assert meta["ftplatform"]["base_model_local_path"] == str(tiny_model_dir)
    [model] = meta["model-index"]
    by_split = {result["dataset"]["split"]: result for result in model["results"]}
    assert set(by_split) == {"test", "validation"}
    test = by_split["test"]
    snapshot = version.training_run.snapshot
    assert test["task"]["type"] == "text-generation"
    assert test["dataset"]["revision"] == snapshot.content_hash
    assert test["dataset"]["name"] == f"{snapshot.dataset.name} (snapshot {snapshot.pk})"
    assert test["metrics"] == [{"type": "bleu", "name": "BLEU", "value": 20.0},
                               {"type": "chrf", "name": "chrF", "value": 51.23},
                               {"type": "rouge", "name": "ROUGE-L", "value": 40.5}]
    assert f"ftplatform eval run {latest.pk}" in (folder / "README.md").read_text()

    # The adapter loads onto the base weights (here the local tiny folder standing in for the Hub repo).
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), folder)


@pytest.mark.django_db
def test_a_version_never_evaluated_has_no_model_index(version, tmp_path):
    folder = export_hub_adapter(version, by=EngineerFactory(), output_dir=tmp_path / "repo")
    assert "model-index" not in front_matter(folder)


@pytest.mark.django_db
def test_without_a_hub_id_or_with_a_bad_one_nothing_is_written(version, tmp_path):
    BaseModel.objects.filter(pk=version.base_model_id).update(hub_id="")
    version.refresh_from_db()
    with pytest.raises(ServiceError, match="records no Hugging Face Hub id") as caught:
        export_hub_adapter(version, by=EngineerFactory(), output_dir=tmp_path / "repo")
    assert caught.value.field == "hub_id"
    with pytest.raises(ServiceError, match="not a Hub repo id"):
        export_hub_adapter(version, by=EngineerFactory(), output_dir=tmp_path / "repo", hub_id="../../etc")
    assert not (tmp_path / "repo").exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(NotAllowed):
        export_hub_adapter(version, by=AnnotatorFactory(), output_dir=tmp_path / "repo", hub_id="a/b")


@pytest.mark.django_db
def test_the_command_writes_the_repo_and_never_overwrites(version, tmp_path):
    out = StringIO()
    call_command("export_hub_model", model_version=version.pk, username=EngineerFactory().username,
                 output=tmp_path / "repo", hub_id="other-org/tiny", stdout=out)
    assert str(tmp_path / "repo") in out.getvalue()
    assert json.loads((tmp_path / "repo" / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        "other-org/tiny"
    assert (tmp_path / "repo" / EXPORT_RECORD_FILE).is_file()
    with pytest.raises(Conflict):
        export_hub_adapter(version, by=EngineerFactory(), output_dir=tmp_path / "repo")
