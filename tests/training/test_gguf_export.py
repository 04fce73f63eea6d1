"""GGUF export: llama.cpp's converter on a merged LoRA model, the chat metadata checked, the answers compared."""
import json
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ftml.export import export_merged
from ftml.gguf import (
    GgufMetadataMismatch,
    answer_parity,
    check_chat_metadata,
    export_gguf,
    load_gguf,
    read_chat_metadata,
)
from ftml.metrics import score_corpus, scored_metrics
from ftplatform.errors import Conflict, NotAllowed, ServiceError
from tests.support.factories import AnnotatorFactory, EngineerFactory, snapshot_of, tiny_base_model
from tests.support.tiny_model import build_random_adapter
from training.choices import ModelVersionKind
from training.exports import EXPORT_RECORD_FILE, export_gguf_model
from training.models import ModelVersion


@contextmanager
def tiny_tokenizer_known_as_gpt2():
    """llama.cpp's converter names a BPE tokenizer's pre-tokenizer by hashing how it tokenizes a fixed text,
    and knows only published models' tokenizers: the tiny one, trained on the fly, is not among them. Its
    pre-tokenizer is byte-level BPE's GPT-2 regex (tokenizers' ByteLevel), which llama.cpp calls "gpt-2"."""
    from conversion.base import TextModel

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TextModel, "get_vocab_base_pre", lambda self, tokenizer: "gpt-2")
        yield


@pytest.fixture
def gpt2_pre_tokenizer():
    with tiny_tokenizer_known_as_gpt2():
        yield


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with random (not zero) B matrices, so the merged model differs from the base."""
    return build_random_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter"))


@pytest.fixture(scope="module")
def merged_dir(tiny_model_dir, adapter_dir, tmp_path_factory):
    return export_merged(tiny_model_dir, adapter_dir, tmp_path_factory.mktemp("merged") / "merged")


@pytest.fixture(scope="module")
def f32_gguf(merged_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf"
    with tiny_tokenizer_known_as_gpt2():
        export_gguf(merged_dir, path, outtype="f32")
    return path


def tokenizer_of(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


# -- converter and metadata (engine) -----------------------------------------------------------------------------

def test_gguf_carries_the_exact_chat_template_and_eos(merged_dir, f32_gguf):
    metadata, tokenizer = read_chat_metadata(f32_gguf), tokenizer_of(merged_dir)
    assert metadata["chat_template"] == tokenizer.chat_template
    assert "<|im_start|>" in metadata["chat_template"]
    assert metadata["eos_token"] == "<|im_end|>"
    assert metadata["eos_token_id"] == tokenizer.convert_tokens_to_ids("<|im_end|>")


@pytest.mark.slow
def test_f32_gguf_computes_the_merged_models_logits(merged_dir, f32_gguf):
    import torch
    from transformers import AutoModelForCausalLM

    model, gguf_tokenizer = load_gguf(f32_gguf)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    text = "<|im_start|>user\nname: The Eagle; food: French<|im_end|>\n<|im_start|>assistant\n"
    encoded = tokenizer_of(merged_dir)(text, return_tensors="pt")
    assert gguf_tokenizer(text)["input_ids"] == encoded["input_ids"][0].tolist()
    with torch.inference_mode():
        assert float((model(**encoded).logits - merged(**encoded).logits).abs().max()) < 1e-4


def test_a_template_other_than_the_models_is_refused(merged_dir, f32_gguf):
    tokenizer = tokenizer_of(merged_dir)
    tokenizer.chat_template = tokenizer.chat_template.replace("<|im_end|>", "</s>")
    with pytest.raises(GgufMetadataMismatch, match="tokenizer.chat_template in tiny-f32.gguf is not the model's"):
        check_chat_metadata(f32_gguf, tokenizer)


def test_an_eos_other_than_the_models_is_refused(merged_dir, f32_gguf):
    tokenizer = tokenizer_of(merged_dir)
    tokenizer.eos_token = "<|endoftext|>"
    with pytest.raises(GgufMetadataMismatch, match="eos_token_id in tiny-f32.gguf is .*'<\\|im_end\\|>'.*"
                                                   "stops at .*'<\\|endoftext\\|>'"):
        check_chat_metadata(f32_gguf, tokenizer)


def test_a_file_failing_the_metadata_check_is_not_left_behind(merged_dir, gpt2_pre_tokenizer, tmp_path, monkeypatch):
    def refuse(path, tokenizer):
        raise GgufMetadataMismatch("different template")

    monkeypatch.setattr("ftml.gguf.check_chat_metadata", refuse)
    with pytest.raises(GgufMetadataMismatch):
        export_gguf(merged_dir, tmp_path / "out" / "model.gguf")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_tokenizer_llama_cpp_does_not_know_is_refused_clearly(merged_dir, tmp_path):
    with pytest.raises(ValueError, match="llama.cpp's converter cannot convert merged: .*pre-tokenizer was not "
                                         "recognized"):
        export_gguf(merged_dir, tmp_path / "model.gguf")
    assert not list(tmp_path.iterdir())


def test_export_refuses_an_existing_file_and_an_unknown_outtype(merged_dir, tmp_path):
    (tmp_path / "taken.gguf").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="taken.gguf already exists"):
        export_gguf(merged_dir, tmp_path / "taken.gguf")
    assert (tmp_path / "taken.gguf").read_bytes() == b"mine"
    with pytest.raises(ValueError, match="outtype must be one of f16, f32, q8_0, got 'q4_0'"):
        export_gguf(merged_dir, tmp_path / "new.gguf", outtype="q4_0")


# -- parity ------------------------------------------------------------------------------------------------------

def test_parity_reports_each_metric_of_both_answer_sets_and_the_identical_answers():
    references = [["The Eagle is a French coffee shop."], ["Cotto is a cheap pub."], ["Zizzi is a pub."]]
    original = ["The Eagle is a French coffee shop.", "Cotto is a cheap pub.", "Zizzi is a pub."]
    converted = ["The Eagle is a French coffee shop.", "Cotto is a pub by the river.", "Zizzi is a pub."]
    parity = answer_parity(original, converted, references)
    assert parity["inputs"] == 3 and parity["identical_answers"] == 2
    assert set(parity["metrics"]) == set(scored_metrics())
    chrf = parity["metrics"]["chrf"]
    assert chrf["original"] == score_corpus(original, references).chrf == 100
    assert chrf["converted"] == score_corpus(converted, references).chrf < 100
    assert chrf["difference"] == chrf["converted"] - chrf["original"] < 0


def test_parity_needs_one_answer_of_each_per_input():
    with pytest.raises(ValueError, match="2 original answers, 1 converted answers and 2 reference lists"):
        answer_parity(["a", "b"], ["a"], [["a"], ["b"]])


# -- service and command ------------------------------------------------------------------------------------------

def lora_version(tiny_model_dir, adapter_dir) -> ModelVersion:
    return ModelVersion.objects.create(name="tiny + LoRA", kind=ModelVersionKind.LORA_ADAPTER,
                                       base_model=tiny_base_model(tiny_model_dir), adapter_path=str(adapter_dir))


@pytest.mark.slow
@pytest.mark.django_db
def test_export_command_writes_a_gguf_and_its_parity_on_the_test_split(tiny_model_dir, adapter_dir, e2e_records,
                                                                        gpt2_pre_tokenizer, artifacts_root):
    version, snapshot, out = lora_version(tiny_model_dir, adapter_dir), snapshot_of(e2e_records[:80]), StringIO()
    call_command("export_gguf", model_version=version.pk, username=EngineerFactory().username,
                 parity_snapshot=snapshot.pk, max_new_tokens=12, stdout=out)
    folder = artifacts_root / "gguf" / f"model-version-{version.pk}"
    gguf_name = f"model-version-{version.pk}-f16.gguf"
    assert sorted(path.name for path in folder.iterdir()) == [EXPORT_RECORD_FILE, gguf_name]
    record = json.loads((folder / EXPORT_RECORD_FILE).read_text())
    assert read_chat_metadata(folder / record["gguf_file"])["chat_template"] == tokenizer_of(adapter_dir).chat_template
    assert (record["outtype"], record["eos_token"]) == ("f16", "<|im_end|>")
    parity = record["parity"]
    distinct_inputs = {item.input_hash for item in snapshot.items.filter(split="test")}
    assert parity["snapshot_id"] == snapshot.pk and parity["inputs"] == len(distinct_inputs) > 0
    assert 0 <= parity["identical_answers"] <= parity["inputs"]
    assert set(parity["metrics"]) == set(scored_metrics(language="en"))
    for scores in parity["metrics"].values():
        assert scores["difference"] == pytest.approx(scores["converted"] - scores["original"])
    assert "answers identical" in out.getvalue() and "chrf: original " in out.getvalue()


@pytest.mark.django_db
def test_export_command_names_an_unknown_parity_snapshot(tiny_model_dir, adapter_dir):
    version = lora_version(tiny_model_dir, adapter_dir)
    with pytest.raises(CommandError, match="--parity-snapshot: no snapshot 999999"):
        call_command("export_gguf", model_version=version.pk, username=EngineerFactory().username,
                     parity_snapshot=999999)


@pytest.mark.django_db
def test_a_prompted_base_version_cannot_be_exported_as_gguf(tiny_model_dir):
    version = ModelVersion.objects.create(name="tiny prompted", kind=ModelVersionKind.PROMPTED_BASE,
                                          base_model=tiny_base_model(tiny_model_dir), system_prompt="Be brief.")
    with pytest.raises(ServiceError, match=f"model version {version.pk} is a base model with a system prompt, not a "
                                           "LoRA adapter: only LoRA versions can be exported as GGUF"):
        export_gguf_model(version, by=EngineerFactory())


@pytest.mark.django_db
def test_annotator_may_not_export_a_gguf(tiny_model_dir, adapter_dir, artifacts_root):
    with pytest.raises(NotAllowed, match="may not export GGUF models"):
        export_gguf_model(lora_version(tiny_model_dir, adapter_dir), by=AnnotatorFactory())
    assert not (artifacts_root / "gguf").exists()


@pytest.mark.django_db
def test_an_existing_folder_is_a_conflict_and_left_alone(tiny_model_dir, adapter_dir, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("mine")
    with pytest.raises(Conflict, match="taken already exists"):
        export_gguf_model(lora_version(tiny_model_dir, adapter_dir), by=EngineerFactory(),
                          output_dir=tmp_path / "taken")
    assert [path.name for path in tmp_path.iterdir()] == ["taken"]
    assert [path.name for path in (tmp_path / "taken").iterdir()] == ["mine.txt"]


@pytest.mark.django_db
def test_an_unapproved_parity_snapshot_is_refused(tiny_model_dir, adapter_dir, e2e_records, artifacts_root):
    snapshot = snapshot_of(e2e_records[:40], approve=False)
    with pytest.raises(ServiceError, match=f"snapshot {snapshot.pk} is pending_review; a reviewer must approve it"):
        export_gguf_model(lora_version(tiny_model_dir, adapter_dir), by=EngineerFactory(), parity_snapshot=snapshot)
    assert not (artifacts_root / "gguf").exists()


@pytest.mark.slow
@pytest.mark.django_db
def test_a_failed_conversion_leaves_nothing(tiny_model_dir, adapter_dir, artifacts_root):
    # no gpt2_pre_tokenizer here: the converter refuses the tiny tokenizer after the merge
    with pytest.raises(ServiceError, match="cannot convert model version .* to GGUF: .*pre-tokenizer was not "
                                           "recognized"):
        export_gguf_model(lora_version(tiny_model_dir, adapter_dir), by=EngineerFactory())
    assert list((artifacts_root / "gguf").iterdir()) == []
