"""ftml.vllm: the vLLM launch plan for a base model and LoRA adapters, read from real folders.

vLLM itself is not installed here (its wheels need CUDA), so the plan is checked against the files it was
built from and against the formats vLLM's parser documents; bench/gpu/vllm_check.sh runs it on a GPU.
"""
import json
import os
import shutil
import stat
import subprocess

import pytest
import yaml

from ftml.vllm import (
    UnservableAdapter,
    VllmPlanError,
    lora_rank,
    plan_vllm_launch,
    write_launch_files,
)

TEXTS = ["The Eagle is a coffee shop near the river.", "Alimentum serves French food in the city centre."] * 20
OTHER_TEMPLATE = "{% for message in messages %}[{{ message['role'] }}] {{ message['content'] }}\n{% endfor %}"


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    from tests.support.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("base") / "tiny-base", TEXTS)


def make_adapter(base_dir, folder, *, r=4, chat_template=None, add_pad=False, tokenizer=True):
    """A peft LoRA adapter saved as ftml.train saves one (adapter weights + the tokenizer it trained with)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(base_dir)
    if chat_template:
        tok.chat_template = chat_template
    if add_pad:  # what ftml.train.load_tokenizer does when the base has no pad distinct from EOS
        tok.add_special_tokens({"pad_token": "<|pad|>"})
        model.resize_token_embeddings(len(tok), mean_resizing=False)
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"],
                                                  task_type="CAUSAL_LM"))
    peft_model.save_pretrained(folder)
    if tokenizer:
        tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def adapter_dir(base_dir, tmp_path_factory):
    return make_adapter(base_dir, tmp_path_factory.mktemp("adapters") / "support-bot", r=4)


@pytest.fixture(scope="module")
def rank16_dir(base_dir, tmp_path_factory):
    return make_adapter(base_dir, tmp_path_factory.mktemp("adapters") / "rank16", r=12)


def flag_value(argv, flag):
    """The value after ``flag`` in argv (vLLM flags take one value unless they are lists)."""
    assert argv.count(flag) == 1, f"{flag} appears {argv.count(flag)} times in {argv}"
    return argv[argv.index(flag) + 1]


def lora_modules(argv):
    start = argv.index("--lora-modules") + 1
    items = []
    for item in argv[start:]:
        if item.startswith("--"):
            break
        items.append(item)
    return items


def copy_adapter(adapter_dir, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(adapter_dir, target)
    return target


def edit_adapter_config(folder, **changes):
    path = folder / "adapter_config.json"
    settings = json.loads(path.read_text())
    settings.update(changes)
    path.write_text(json.dumps(settings))


# The command and its values, read back from the folders.

def test_argv_serves_the_base_folder_under_its_served_name(base_dir, adapter_dir):
    plan = plan_vllm_launch(base_dir, {"support-bot": adapter_dir}, served_model_name="tiny")
    assert plan.argv[:3] == ["vllm", "serve", str(base_dir.resolve())]
    assert flag_value(plan.argv, "--served-model-name") == "tiny"
    assert "--enable-lora" in plan.argv


def test_each_adapter_is_a_json_lora_module_on_the_base(base_dir, adapter_dir, rank16_dir):
    plan = plan_vllm_launch(base_dir, {"support-bot": adapter_dir, "rank16": rank16_dir}, served_model_name="tiny")
    modules = [json.loads(item) for item in lora_modules(plan.argv)]
    assert modules == [
        {"name": "support-bot", "path": str(adapter_dir.resolve()), "base_model_name": "tiny"},
        {"name": "rank16", "path": str(rank16_dir.resolve()), "base_model_name": "tiny"},
    ]
    # vLLM's LoRAParserAction reads an item holding '=' and no ',' as name=path; JSON items must hold a ','.
    assert all("," in item for item in lora_modules(plan.argv))


def test_max_lora_rank_is_the_largest_adapter_rank_rounded_up_to_a_rank_vllm_accepts(base_dir, adapter_dir,
                                                                                     rank16_dir):
    ranks = [json.loads((d / "adapter_config.json").read_text())["r"] for d in (adapter_dir, rank16_dir)]
    assert ranks == [4, 12]
    both = plan_vllm_launch(base_dir, {"a": adapter_dir, "b": rank16_dir})
    alone = plan_vllm_launch(base_dir, {"a": adapter_dir})
    # vllm/config/lora.py: max_lora_rank is one of 1, 8, 16, 32, 64, 128, 256, 320, 512.
    assert flag_value(both.argv, "--max-lora-rank") == "16"
    assert flag_value(alone.argv, "--max-lora-rank") == "8"
    assert [m.lora_rank for m in both.served_models] == [None, 4, 12]


def test_a_larger_rank_in_rank_pattern_counts(adapter_dir, tmp_path):
    folder = copy_adapter(adapter_dir, tmp_path)
    edit_adapter_config(folder, rank_pattern={"q_proj": 32})
    assert lora_rank(folder) == 32


def test_max_loras_defaults_to_the_number_of_adapters(base_dir, adapter_dir, rank16_dir):
    plan = plan_vllm_launch(base_dir, {"a": adapter_dir, "b": rank16_dir})
    assert flag_value(plan.argv, "--max-loras") == "2"
    assert flag_value(plan_vllm_launch(base_dir, {"a": adapter_dir}, max_loras=3).argv, "--max-loras") == "3"


def test_max_model_len_defaults_to_the_base_models_max_position_embeddings(base_dir, adapter_dir):
    expected = json.loads((base_dir / "config.json").read_text())["max_position_embeddings"]
    plan = plan_vllm_launch(base_dir, {"a": adapter_dir})
    assert flag_value(plan.argv, "--max-model-len") == str(expected)
    assert flag_value(plan_vllm_launch(base_dir, max_model_len=64).argv, "--max-model-len") == "64"


def test_options_reach_the_command(base_dir):
    plan = plan_vllm_launch(base_dir, host="10.0.0.5", port=8123, dtype="float32", gpu_memory_utilization=0.5)
    assert [flag_value(plan.argv, f) for f in ("--host", "--port", "--dtype", "--gpu-memory-utilization")] == [
        "10.0.0.5", "8123", "float32", "0.5"]
    assert plan.base_url == "http://10.0.0.5:8123/v1"


def test_the_base_alone_is_served_without_lora(base_dir):
    plan = plan_vllm_launch(base_dir)
    assert "--enable-lora" not in plan.argv and "--lora-modules" not in plan.argv
    assert [m.name for m in plan.served_models] == [base_dir.name]


def test_a_wildcard_host_is_called_through_public_host(base_dir):
    assert plan_vllm_launch(base_dir, host="0.0.0.0", public_host="gpu-1.internal").base_url == (
        "http://gpu-1.internal:8000/v1")
    plan = plan_vllm_launch(base_dir, host="0.0.0.0")
    assert plan.base_url == "http://localhost:8000/v1"
    assert any("public_host" in w for w in plan.warnings)


def test_no_chat_template_flag_when_the_adapter_trained_with_the_bases(base_dir, adapter_dir):
    assert "--chat-template" not in plan_vllm_launch(base_dir, {"a": adapter_dir}).argv


def test_an_adapter_trained_with_another_chat_template_brings_it(base_dir, tmp_path):
    folder = make_adapter(base_dir, tmp_path / "templated", chat_template=OTHER_TEMPLATE)
    plan = plan_vllm_launch(base_dir, {"t": folder})
    template_file = flag_value(plan.argv, "--chat-template")
    assert open(template_file).read() == OTHER_TEMPLATE
    assert any("requests to the base model" in w for w in plan.warnings)


def test_adapters_with_different_chat_templates_cannot_share_a_server(base_dir, adapter_dir, tmp_path):
    folder = make_adapter(base_dir, tmp_path / "templated", chat_template=OTHER_TEMPLATE)
    with pytest.raises(VllmPlanError, match="different chat templates") as caught:
        plan_vllm_launch(base_dir, {"plain": adapter_dir, "t": folder})
    assert caught.value.field == "adapters"


# Files.

def test_written_yaml_holds_the_same_flags_as_argv(base_dir, adapter_dir, tmp_path):
    plan = plan_vllm_launch(base_dir, {"support-bot": adapter_dir}, served_model_name="tiny")
    folder = write_launch_files(plan, tmp_path / "launch")
    config = yaml.safe_load((folder / "vllm.yaml").read_text())
    assert config["served-model-name"] == "tiny"
    assert config["max-lora-rank"] == 8 and config["enable-lora"] is True
    assert [json.loads(item)["path"] for item in config["lora-modules"]] == [str(adapter_dir.resolve())]
    assert "model" not in config  # the folder is the positional argument of `vllm serve`
    for key, value in config.items():
        if isinstance(value, bool):
            assert f"--{key}" in plan.argv
        elif not isinstance(value, list):
            assert flag_value(plan.argv, f"--{key}") == str(value)


def fake_vllm(tmp_path):
    """A stand-in for the vllm command that prints what it was given."""
    script = tmp_path / "fake-vllm"
    script.write_text('#!/usr/bin/env bash\necho "args: $*"\necho "key: ${VLLM_API_KEY:-none}"\n')
    script.chmod(0o755)
    return script


def test_launch_script_runs_vllm_serve_with_the_config_and_the_key_from_the_named_variable(base_dir, adapter_dir,
                                                                                          tmp_path):
    plan = plan_vllm_launch(base_dir, {"a": adapter_dir}, api_key_env="SERVING_KEY")
    folder = write_launch_files(plan, tmp_path / "launch")
    script = folder / "launch.sh"
    assert script.stat().st_mode & stat.S_IXUSR
    env = {"PATH": os.environ["PATH"], "VLLM": str(fake_vllm(tmp_path)), "SERVING_KEY": "s3cret-value"}
    result = subprocess.run([str(script), "--port", "9001"], env=env, capture_output=True, text=True, check=True,
                            cwd=tmp_path)
    assert f"args: serve {base_dir.resolve()} --config vllm.yaml --port 9001" in result.stdout
    assert "key: s3cret-value" in result.stdout
    assert "s3cret-value" not in "".join(p.read_text() for p in folder.iterdir())


def test_launch_script_refuses_to_start_without_the_key(base_dir, tmp_path):
    folder = write_launch_files(plan_vllm_launch(base_dir, api_key_env="SERVING_KEY"), tmp_path / "launch")
    env = {"PATH": os.environ["PATH"], "VLLM": str(fake_vllm(tmp_path))}
    result = subprocess.run([str(folder / "launch.sh")], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "SERVING_KEY" in result.stderr and "args:" not in result.stdout


def test_served_models_json_maps_model_versions_to_served_names(base_dir, adapter_dir, tmp_path):
    plan = plan_vllm_launch(base_dir, {"support-bot": adapter_dir}, served_model_name="tiny",
                            model_versions={"tiny": 3, "support-bot": 7}, api_key_env="SERVING_KEY")
    served = json.loads((write_launch_files(plan, tmp_path / "launch") / "served_models.json").read_text())
    assert served["base_url"] == "http://127.0.0.1:8000/v1" and served["api_key_env"] == "SERVING_KEY"
    assert [(m["served_name"], m["kind"], m["model_version"], m["lora_rank"]) for m in served["models"]] == [
        ("tiny", "base", "3", None), ("support-bot", "lora", "7", 4)]


def test_an_existing_launch_folder_is_kept_unless_replace(base_dir, tmp_path):
    folder = tmp_path / "launch"
    write_launch_files(plan_vllm_launch(base_dir, port=8001), folder)
    with pytest.raises(FileExistsError):
        write_launch_files(plan_vllm_launch(base_dir, port=8002), folder)
    assert "port: 8001" in (folder / "vllm.yaml").read_text()
    write_launch_files(plan_vllm_launch(base_dir, port=8002), folder, replace=True)
    assert "port: 8002" in (folder / "vllm.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["launch"]  # no staging or old folder left


def test_a_failed_write_leaves_no_folder(base_dir, tmp_path, monkeypatch):
    plan = plan_vllm_launch(base_dir)
    monkeypatch.setattr(type(plan), "launch_script", lambda self: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        write_launch_files(plan, tmp_path / "launch")
    assert list(tmp_path.iterdir()) == []


# Bad input: the error names the field.

def test_missing_base_folder_is_named(tmp_path):
    with pytest.raises(VllmPlanError, match="does not exist") as caught:
        plan_vllm_launch(tmp_path / "nowhere")
    assert caught.value.field == "base_model_dir"


def test_missing_adapter_folder_is_named(base_dir, tmp_path):
    with pytest.raises(VllmPlanError, match="does not exist") as caught:
        plan_vllm_launch(base_dir, {"gone": tmp_path / "gone"})
    assert caught.value.field == "adapters.gone"


def test_a_folder_without_adapter_config_is_not_an_adapter(base_dir):
    with pytest.raises(VllmPlanError, match="no adapter_config.json") as caught:
        plan_vllm_launch(base_dir, {"base-again": base_dir})
    assert caught.value.field == "adapters.base-again"


@pytest.mark.parametrize("name", ["my adapter", "", "-dash-first", "a" * 129])
def test_served_names_must_be_plain(base_dir, adapter_dir, name):
    with pytest.raises(VllmPlanError, match="no spaces") as caught:
        plan_vllm_launch(base_dir, {name: adapter_dir})
    assert caught.value.field == f"adapters.{name}"


def test_duplicate_served_names_are_refused(base_dir, adapter_dir, rank16_dir):
    with pytest.raises(VllmPlanError, match="already used by adapters.a") as caught:
        plan_vllm_launch(base_dir, [("a", adapter_dir), ("a", rank16_dir)])
    assert caught.value.field == "adapters.a"
    with pytest.raises(VllmPlanError, match="already used by served_model_name"):
        plan_vllm_launch(base_dir, {"tiny": adapter_dir}, served_model_name="tiny")


def test_an_adapter_of_another_base_model_is_refused(base_dir, adapter_dir, tmp_path):
    folder = copy_adapter(adapter_dir, tmp_path)
    edit_adapter_config(folder, base_model_name_or_path="/models/SmolLM2-135M-Instruct")
    with pytest.raises(VllmPlanError, match="trained on /models/SmolLM2-135M-Instruct") as caught:
        plan_vllm_launch(base_dir, {"other": folder})
    assert caught.value.field == "adapters.other"


def test_an_adapter_whose_base_folder_moved_is_served_with_a_warning(base_dir, adapter_dir, tmp_path):
    folder = copy_adapter(adapter_dir, tmp_path)
    edit_adapter_config(folder, base_model_name_or_path=f"/elsewhere/{base_dir.name}")
    plan = plan_vllm_launch(base_dir, {"moved": folder})
    assert any("adapters.moved: trained on /elsewhere" in w for w in plan.warnings)


@pytest.mark.parametrize("r", ["eight", 0, None, 2.5])
def test_an_unreadable_rank_is_named(base_dir, adapter_dir, tmp_path, r):
    folder = copy_adapter(adapter_dir, tmp_path)
    edit_adapter_config(folder, r=r)
    with pytest.raises(VllmPlanError, match="LoRA rank not readable") as caught:
        plan_vllm_launch(base_dir, {"bad": folder})
    assert caught.value.field == "adapters.bad"


def test_a_broken_adapter_config_is_named(base_dir, adapter_dir, tmp_path):
    folder = copy_adapter(adapter_dir, tmp_path)
    (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(VllmPlanError, match="adapter_config.json cannot be read") as caught:
        plan_vllm_launch(base_dir, {"bad": folder})
    assert caught.value.field == "adapters.bad"


def test_an_adapter_trained_with_an_added_token_cannot_be_served_on_the_base(base_dir, tmp_path):
    folder = make_adapter(base_dir, tmp_path / "padded", add_pad=True)
    with pytest.raises(UnservableAdapter, match="embed_tokens") as caught:
        plan_vllm_launch(base_dir, {"padded": folder})
    assert caught.value.field == "adapters.padded"
    assert "export_merged" in str(caught.value)


def test_a_tokenizer_larger_than_the_base_vocabulary_is_refused(base_dir, adapter_dir, tmp_path):
    from transformers import AutoTokenizer

    folder = copy_adapter(adapter_dir, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|tool|>"]})
    tokenizer.save_pretrained(folder)
    with pytest.raises(UnservableAdapter, match="more than the base model's vocabulary") as caught:
        plan_vllm_launch(base_dir, {"tools": folder})
    assert caught.value.field == "adapters.tools"


def test_a_dora_adapter_is_refused(base_dir, adapter_dir, tmp_path):
    folder = copy_adapter(adapter_dir, tmp_path)
    edit_adapter_config(folder, use_dora=True)
    with pytest.raises(UnservableAdapter, match="DoRA") as caught:
        plan_vllm_launch(base_dir, {"dora": folder})
    assert caught.value.field == "adapters.dora"


@pytest.mark.parametrize(("options", "field_name", "message"), [
    ({"port": 70000}, "port", "1 to 65535"),
    ({"dtype": "fp8"}, "dtype", "must be one of auto"),
    ({"max_model_len": 10_000}, "max_model_len", "more than the base model's max_position_embeddings"),
    ({"max_loras": 0}, "max_loras", ">= 1"),
    ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization", "(0, 1]"),
    ({"model_versions": {"nobody": 1}}, "model_versions", "nobody is not a served name"),
])
def test_bad_options_are_named(base_dir, options, field_name, message):
    with pytest.raises(VllmPlanError) as caught:
        plan_vllm_launch(base_dir, **options)
    assert caught.value.field == field_name
    assert message in str(caught.value)


def test_a_pasted_key_is_refused_without_being_echoed(base_dir):
    with pytest.raises(VllmPlanError) as caught:
        plan_vllm_launch(base_dir, api_key_env="sk-abc123-secret")
    assert caught.value.field == "api_key_env"
    assert "sk-abc123" not in str(caught.value)
