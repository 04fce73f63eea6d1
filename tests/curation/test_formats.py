import json

import pytest

from curation.formats import FormatError, content_hash, input_hash, read_jsonl, validate_messages


def lines(*records):
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records).encode()


GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def test_unknown_role_is_named_with_its_message_position():
    with pytest.raises(FormatError, match="message 2 has role 'bot'"):
        validate_messages([{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}])


def test_conversation_without_assistant_turn_is_rejected():
    with pytest.raises(FormatError, match="no assistant turn"):
        validate_messages([{"role": "user", "content": "a"}])


def test_conversation_must_end_with_assistant():
    with pytest.raises(FormatError, match="must end with the assistant"):
        validate_messages([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                           {"role": "user", "content": "c"}])


def test_system_message_only_first():
    with pytest.raises(FormatError,
                       match=r"message 2 \(system\): only the first message may be a system or developer message"):
        validate_messages([{"role": "user", "content": "a"}, {"role": "system", "content": "s"},
                           {"role": "assistant", "content": "b"}])


def test_empty_assistant_content_is_rejected():
    with pytest.raises(FormatError, match=r"message 2 \(assistant\) has empty content"):
        validate_messages([{"role": "user", "content": "a"}, {"role": "assistant", "content": "  "}])


def test_read_jsonl_numbers_lines_from_one_and_skips_blank_lines():
    parsed = list(read_jsonl(lines(GOOD, "", "{broken", GOOD), "chat_jsonl"))
    assert [(p.line, p.error is None) for p in parsed] == [(1, True), (3, False), (4, True)]
    assert parsed[1].error.startswith("invalid JSON")


def test_bom_crlf_and_missing_final_newline_are_accepted():
    data = b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\r\n" + json.dumps(GOOD).encode()
    parsed = list(read_jsonl(data, "chat_jsonl"))
    assert [p.error for p in parsed] == [None, None]


def test_unicode_line_separator_inside_a_string_does_not_split_the_record():
    record = {"messages": [{"role": "user", "content": "a\u2028b"}, {"role": "assistant", "content": "c\u2029d"}]}
    parsed = list(read_jsonl(json.dumps(record, ensure_ascii=False).encode(), "chat_jsonl"))
    assert len(parsed) == 1 and parsed[0].messages[0]["content"] == "a\u2028b"


def test_invalid_utf8_names_the_line():
    parsed = list(read_jsonl(lines(GOOD) + b"\n\xff\xfe{}", "chat_jsonl"))
    assert parsed[1].line == 2 and "invalid UTF-8" in parsed[1].error


def test_prompt_completion_becomes_user_and_assistant_turns():
    parsed = list(read_jsonl(lines({"prompt": "q", "completion": "a"}), "prompt_completion_jsonl"))
    assert parsed[0].messages == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


def test_hashes_ignore_key_order_and_input_hash_ignores_the_output():
    a = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]
    b = [{"content": "q", "role": "user"}, {"content": "x", "role": "assistant"}]
    c = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "y"}]
    assert content_hash(a) == content_hash(b) != content_hash(c)
    assert input_hash(a) == input_hash(c)


@pytest.mark.parametrize("raw, reason", [
    (b'{"messages": [], "metadata": {"x": NaN}}', "NaN is not valid JSON"),
    (b'{"messages": [], "metadata": {"x": 1e999}}', "inf is not a finite number"),
    (b'{"messages": [{"role": "user", "content": "a\\u0000"}]}', "NUL character"),
    (b'{"messages": [{"role": "user", "content": "a\\ud800"}]}', "unpaired surrogate"),
    (b'{"messages": [], "metadata": {"x": ' + b"[" * 2000 + b"]" * 2000 + b"}}", "nested deeper"),
    (b'{"messages": [], "metadata": {"x": ' + b"9" * 5000 + b"}}", "integer string conversion"),
])
def test_json_a_database_cannot_store_is_a_line_error(raw, reason):
    parsed = list(read_jsonl(GOOD_BYTES + b"\n" + raw, "chat_jsonl"))
    assert parsed[0].error is None
    assert parsed[1].line == 2 and reason in parsed[1].error


def test_lone_cr_line_ends_split_records():
    parsed = list(read_jsonl(GOOD_BYTES + b"\r" + GOOD_BYTES + b"\r", "chat_jsonl"))
    assert [(p.line, p.error) for p in parsed] == [(1, None), (2, None)]


def test_utf16_file_with_bom_is_read():
    data = (GOOD_BYTES.decode() + "\n" + GOOD_BYTES.decode() + "\n").encode("utf-16")
    assert [p.error for p in read_jsonl(data, "chat_jsonl")] == [None, None]


def test_message_name_must_be_a_string():
    with pytest.raises(FormatError, match=r"message 1 \(user\): 'name' must be a string, got \{\}"):
        validate_messages([{"role": "user", "content": "a", "name": {}}, {"role": "assistant", "content": "b"}])


GOOD_BYTES = json.dumps(GOOD).encode()


def test_content_given_as_text_parts_is_joined():
    messages = validate_messages([
        {"role": "user", "content": [{"type": "text", "text": "line one"}, {"type": "text", "text": "line two"}]},
        {"role": "assistant", "content": "ok"},
    ])
    assert messages[0]["content"] == "line one\nline two"


def test_image_parts_are_refused_by_name():
    with pytest.raises(FormatError, match="content part 1 'type' is \"image_url\"; only text parts"):
        validate_messages([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                           {"role": "assistant", "content": "ok"}])


def tool_call(call_id="call_1", name="get_weather", arguments='{"city": "Paris"}'):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_answered_tool_call_turns_are_valid():
    messages = validate_messages([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [tool_call()]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "assistant", "content": "It is 21 degrees."},
    ])
    assert "content" not in messages[1] and messages[2]["tool_call_id"] == "call_1"  # kept as given


def test_a_tool_call_may_be_the_output_to_learn():
    messages = validate_messages([{"role": "user", "content": "Weather?"},
                                  {"role": "assistant", "content": None, "tool_calls": [tool_call()]}])
    assert messages[-1]["tool_calls"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize("messages, reason", [
    ([{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [tool_call()]},
      {"role": "assistant", "content": "a"}], "call_1 were not answered"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [tool_call()]},
      {"role": "tool", "tool_call_id": "call_9", "content": "x"}, {"role": "assistant", "content": "a"}],
     "'call_9' does not answer a pending tool call"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [tool_call(arguments="city=Paris")]}],
     "'arguments' must be a JSON object"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [tool_call(name="get weather")]}],
     "tool call 1 'function.name' must be 1-64 letters, digits, '_' or '-', got \"get weather\""),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [tool_call(), tool_call()]}],
     "unique, non-empty string 'id'; 'call_1' is repeated"),
    ([{"role": "user", "content": "q", "tool_calls": [tool_call()]}, {"role": "assistant", "content": "a"}],
     "only assistant messages may have 'tool_calls'"),
])
def test_tool_call_rules_name_the_message(messages, reason):
    with pytest.raises(FormatError, match=reason):
        validate_messages(messages)
