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
    with pytest.raises(FormatError, match="message 2 is a system message"):
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
