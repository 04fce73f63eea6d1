"""OpenAI's fine-tuning formats: every documented line shape (weights, developer role, tools and
parallel_tool_calls, the legacy functions, DPO pairs) imports, and comes back unchanged through a
snapshot and its export. The lines are examples/openai_formats.*.jsonl (provenance in examples/PROVENANCE.md)."""
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from curation.choices import ExampleStatus
from curation.exports import start_snapshot_export
from curation.formats import FORMAT_SCHEMA_PATH, content_hash, input_hash, read_jsonl
from curation.imports import import_examples
from curation.models import Example, PreferencePair, SnapshotItem
from curation.preferences import import_preference_pairs, preference_lines
from curation.snapshots import create_snapshot
from ftplatform.errors import NotAllowed
from ftplatform.jobrows import JobStatus
from tests.support.factories import (
    AnnotatorFactory,
    DatasetFactory,
    EngineerFactory,
    ExampleFactory,
    RaterFactory,
)
from training.runs import snapshot_conversations

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CHAT = EXAMPLES / "openai_formats.chat.jsonl"
DPO = EXAMPLES / "openai_formats.dpo.jsonl"


def file_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def canonical(record: dict) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False)


@pytest.mark.django_db(transaction=True)
def test_every_documented_chat_line_round_trips_through_a_snapshot_and_its_export(run_jobs):
    dataset = DatasetFactory(system_prompt="")  # a system prompt would be prepended where a line has none
    engineer = EngineerFactory()
    batch = import_examples(dataset, CHAT, "chat_jsonl", by=engineer)
    assert (batch.status, batch.errors, batch.created_count) == (JobStatus.SUCCEEDED, [], 9)
    Example.objects.update(status=ExampleStatus.APPROVED)
    snapshot, created = create_snapshot(dataset, by=engineer)
    assert created and snapshot.example_count == 9
    export = start_snapshot_export(snapshot, by=engineer)
    run_jobs()
    export.refresh_from_db()
    assert export.status == JobStatus.SUCCEEDED, export.error

    exported = []
    for split in ("train", "validation", "test"):
        with open(Path(export.path) / f"{split}.jsonl", encoding="utf-8") as handle:
            exported += [json.loads(line) for line in handle]
    # Record by record: each line of the file is exactly one exported line, and nothing else is exported.
    expected = {canonical(record): number for number, record in enumerate(file_lines(CHAT), start=1)}
    found = {canonical(record) for record in exported}
    assert len(exported) == len(expected)
    for text, number in expected.items():
        assert text in found, f"line {number} of {CHAT.name} did not come back unchanged"


@pytest.mark.django_db(transaction=True)
def test_the_hugging_face_export_keeps_tool_settings_and_metadata_and_imports_back_unchanged(run_jobs):
    dataset = DatasetFactory(system_prompt="")
    engineer = EngineerFactory()
    import_examples(dataset, CHAT, "chat_jsonl", by=engineer)
    Example.objects.update(status=ExampleStatus.APPROVED)
    snapshot = create_snapshot(dataset, by=engineer)[0]
    export = start_snapshot_export(snapshot, by=engineer)
    run_jobs()
    export.refresh_from_db()
    assert export.status == JobStatus.SUCCEEDED, export.error

    copy = DatasetFactory(system_prompt="")
    for split in ("train", "validation", "test"):
        if snapshot.items.filter(split=split).exists():
            batch = import_examples(copy, Path(export.path) / "hf_dataset", "hf_dataset", by=engineer,
                                    hf_split=split)
            assert (batch.status, batch.errors) == (JobStatus.SUCCEEDED, []), split

    def lines(examples):
        return sorted(canonical({"messages": e.messages, **e.tool_settings,
                                 "metadata": {k: v for k, v in e.metadata.items() if k != "import_line"}})
                      for e in examples)

    assert lines(copy.examples.all()) == lines(dataset.examples.all())
    assert copy.examples.exclude(tool_settings={}).count() == dataset.examples.exclude(tool_settings={}).count() > 0


@pytest.mark.django_db
def test_tool_settings_and_metadata_are_frozen_into_snapshot_items():
    dataset = DatasetFactory(system_prompt="")
    engineer = EngineerFactory()
    import_examples(dataset, CHAT, "chat_jsonl", by=engineer)
    Example.objects.update(status=ExampleStatus.APPROVED)
    snapshot = create_snapshot(dataset, by=engineer)[0]
    records = file_lines(CHAT)
    with_tools = records[5]
    item = SnapshotItem.objects.get(snapshot=snapshot, example__metadata__import_line=6)
    assert item.tool_settings == {"tools": with_tools["tools"], "parallel_tool_calls": False}
    assert item.messages == with_tools["messages"]
    assert item.example_content_hash == content_hash(with_tools["messages"], item.tool_settings)
    developer = SnapshotItem.objects.get(snapshot=snapshot, example__metadata__import_line=5)
    assert developer.metadata == {**records[4]["metadata"], "import_line": 5}


@pytest.mark.django_db
def test_tools_are_part_of_an_examples_identity():
    messages = file_lines(CHAT)[5]["messages"]
    tools = file_lines(CHAT)[5]["tools"]
    assert content_hash(messages, {"tools": tools}) != content_hash(messages)
    assert input_hash(messages, {"tools": tools}) != input_hash(messages, {"functions": [tools[0]["function"]]})
    assert content_hash(messages, {}) == content_hash(messages)  # examples without tools keep their hashes
    lines = [{"messages": messages, "tools": tools}, {"messages": messages, "tools": tools},
             {"messages": messages}]
    batch = import_examples(DatasetFactory(), "\n".join(map(json.dumps, lines)).encode(), "chat_jsonl",
                            by=EngineerFactory())
    assert batch.created_count == 2 and batch.duplicates == [{"line": 2, "duplicate_of": "line 1"}]


@pytest.mark.parametrize("line, reason", [
    ({"messages": [{"role": "user", "content": "q", "weight": 1}, {"role": "assistant", "content": "a"}]},
     "message 1 (user): only assistant messages may have 'weight'"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0.5}]},
     "message 2 (assistant): 'weight' must be 0 (not trained on) or 1 (trained on), got 0.5"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}]},
     "the final assistant turn is the output to learn; it cannot have weight 0"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "tools": {}},
     "'tools' must be a list, got {}"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
      "tools": [{"type": "function", "function": {"name": "get weather"}}]},
     "tool 1: 'function.name' must be 1-64 letters, digits, '_' or '-', got \"get weather\""),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
      "parallel_tool_calls": "yes"}, "'parallel_tool_calls' must be true or false, got \"yes\""),
    ({"messages": [{"role": "user", "content": "q"},
                   {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}},
                   {"role": "function", "name": "g", "content": "1"}, {"role": "assistant", "content": "a"}]},
     "message 3 (function): name 'g' does not answer a pending function call"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "developer", "content": "d"},
                   {"role": "assistant", "content": "a"}]},
     "message 2 (developer): only the first message may be a system or developer message"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "weights": 1},
     "the line has unknown key(s) weights; expected messages, tools, parallel_tool_calls, functions, metadata"),
])
def test_an_invalid_line_is_named_by_line_message_and_field(line, reason):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    parsed = list(read_jsonl(f"{json.dumps(good)}\n{json.dumps(line)}".encode(), "chat_jsonl"))
    assert parsed[0].error is None
    assert parsed[1].line == 2 and reason in parsed[1].error


def test_the_format_schema_is_one_file_the_validator_loads():
    schema = json.loads(FORMAT_SCHEMA_PATH.read_text(encoding="utf-8"))
    assert {"chat_line", "preference_line", "message"} <= set(schema["$defs"])
    assert schema["$defs"]["message"]["properties"]["weight"]["enum"] == [0, 1]


@pytest.mark.django_db
def test_documented_dpo_lines_import_as_preference_pairs_and_export_unchanged():
    dataset = DatasetFactory()
    outcome = import_preference_pairs(dataset, DPO.read_bytes(), by=AnnotatorFactory())
    assert (outcome.imported, outcome.created, outcome.errors) == (True, 2, [])
    pair = PreferencePair.objects.get(dataset=dataset, input_messages__0__role="user")
    assert pair.tool_settings == {"tools": [], "parallel_tool_calls": True}
    exported = [json.loads(line) for line in preference_lines(PreferencePair.objects.filter(dataset=dataset))]
    assert exported == file_lines(DPO)  # in file order, each line unchanged


@pytest.mark.django_db
def test_a_preference_import_names_bad_lines_and_imports_nothing_unless_told_to_skip_them():
    good, bad = file_lines(DPO)[0], {**file_lines(DPO)[0], "non_preferred_output": [{"role": "user", "content": "x"}]}
    data = "\n".join(json.dumps(r) for r in (good, bad, "{broken")).encode()
    dataset, user = DatasetFactory(), EngineerFactory()
    outcome = import_preference_pairs(dataset, data.replace(b'"{broken"', b"{broken"), by=user)
    assert not outcome.imported and PreferencePair.objects.count() == 0
    assert [e["line"] for e in outcome.errors] == [2, 3]
    assert "non_preferred_output message 1 (user): 'role' must be 'assistant'" in outcome.errors[0]["reason"]
    assert outcome.errors[1]["reason"].startswith("invalid JSON")
    skipped = import_preference_pairs(dataset, data.replace(b'"{broken"', b"{broken"), by=user, skip_invalid=True)
    assert skipped.imported and skipped.created == 1


@pytest.mark.django_db
def test_a_preference_pair_whose_two_outputs_are_the_same_is_refused_naming_its_line():
    """The same answer as preferred and non-preferred output imported as a pair, which DPO learns nothing from."""
    good = file_lines(DPO)[0]
    same = {**good, "non_preferred_output": good["preferred_output"]}
    data = "\n".join(json.dumps(r) for r in (good, same)).encode()
    outcome = import_preference_pairs(DatasetFactory(), data, by=EngineerFactory())
    assert not outcome.imported and PreferencePair.objects.count() == 0
    assert outcome.errors == [{"line": 2, "reason": "preferred_output and non_preferred_output are the same answer; "
                                                    "a preference pair needs two different outputs"}]


@pytest.mark.django_db
def test_a_preference_pair_already_in_the_dataset_is_a_duplicate_whatever_its_metadata():
    dataset, user = DatasetFactory(), EngineerFactory()
    import_preference_pairs(dataset, DPO.read_bytes(), by=user)
    again = {**file_lines(DPO)[0], "metadata": {"batch": 2}}
    outcome = import_preference_pairs(dataset, json.dumps(again).encode(), by=user)
    first = PreferencePair.objects.get(dataset=dataset, input_messages__0__role="user")
    assert outcome.created == 0 and outcome.duplicates == [{"line": 1, "duplicate_of": f"preference pair {first.pk}"}]


@pytest.mark.django_db
def test_raters_may_not_import_preference_pairs():
    with pytest.raises(NotAllowed, match="curation.add_preferencepair"):
        import_preference_pairs(DatasetFactory(), DPO.read_bytes(), by=RaterFactory())


@pytest.mark.django_db
def test_the_api_imports_lists_and_exports_preference_pairs():
    dataset, annotator, other = DatasetFactory(), AnnotatorFactory(), AnnotatorFactory()
    client = APIClient()
    client.force_authenticate(annotator)
    response = client.post("/api/v1/preference-pairs/import/",
                           {"dataset": dataset.pk, "file": _upload(DPO.read_bytes())}, format="multipart")
    assert response.status_code == 201 and response.json()["created"] == 2
    listed = client.get("/api/v1/preference-pairs/", {"dataset": dataset.pk}).json()["results"]
    assert [p["preferred_output"] for p in listed] == [line["preferred_output"] for line in file_lines(DPO)]
    export = client.get("/api/v1/preference-pairs/export/", {"dataset": dataset.pk})
    assert export.status_code == 200 and export["Content-Type"] == "application/jsonl"
    lines = b"".join(export.streaming_content).decode().splitlines()
    assert [json.loads(line) for line in lines] == file_lines(DPO)
    no_messages = json.dumps({**file_lines(DPO)[0], "input": {}}).encode()
    bad = client.post("/api/v1/preference-pairs/import/",
                      {"dataset": dataset.pk, "file": _upload(no_messages)}, format="multipart")
    assert bad.status_code == 400 and bad.json()["errors"] == [
        {"line": 1, "reason": "'input' must have 'messages'"}]
    client.force_authenticate(other)  # an annotator sees the pairs they imported only
    assert client.get("/api/v1/preference-pairs/", {"dataset": dataset.pk}).json()["results"] == []


def _upload(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("pairs.jsonl", data, content_type="application/jsonl")


@pytest.mark.django_db
def test_the_commands_import_and_export_preference_pairs(tmp_path, capsys):
    dataset, user = DatasetFactory(), EngineerFactory()
    call_command("import_preference_pairs", str(DPO), dataset=dataset.name, username=user.username)
    assert "2 preference pairs created" in capsys.readouterr().out
    out = tmp_path / "pairs.jsonl"
    call_command("export_preference_pairs", str(out), dataset=dataset.name, username=user.username)
    assert file_lines(out) == file_lines(DPO)


@pytest.mark.django_db
def test_training_reads_an_item_with_tool_settings_as_its_chat_line():
    dataset, settings = DatasetFactory(system_prompt=""), {"tools": file_lines(CHAT)[5]["tools"]}
    for i in range(10):
        messages = [{"role": "user", "content": f"weather {i}?"}, {"role": "assistant", "content": f"sunny {i}"}]
        ExampleFactory(dataset=dataset, status=ExampleStatus.APPROVED, messages=messages,
                       tool_settings=settings if i % 2 else {},
                       content_hash=content_hash(messages, settings if i % 2 else {}),
                       input_hash=input_hash(messages, settings if i % 2 else {}))
    snapshot = create_snapshot(dataset, by=EngineerFactory())[0]
    conversations = [c for split in ("train", "validation", "test") for c in snapshot_conversations(snapshot, split)[1]]
    assert sorted(isinstance(c, dict) for c in conversations) == [False] * 5 + [True] * 5
    assert all(c["tools"] == settings["tools"] and c["messages"][-1]["role"] == "assistant"
               for c in conversations if isinstance(c, dict))


@pytest.mark.django_db
def test_the_admin_imports_preference_pairs_and_lists_them_with_their_answers():
    from django.test import Client

    dataset, annotator = DatasetFactory(), AnnotatorFactory()
    client = Client()
    client.force_login(annotator)
    bad = client.post("/admin/curation/preferencepair/add/",
                      {"dataset": dataset.pk, "file": _upload(b'{"input": {"messages": []}}\n')})
    assert PreferencePair.objects.count() == 0
    assert "line 1: the line must have &#x27;preferred_output&#x27;" in bad.content.decode()
    response = client.post("/admin/curation/preferencepair/add/",
                           {"dataset": dataset.pk, "file": _upload(DPO.read_bytes())}, follow=True)
    page = response.content.decode()
    assert "2 preference pairs created" in page
    assert "It is not particularly cold in San Francisco today." in page  # the non-preferred answer, listed
