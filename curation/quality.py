"""The snapshot quality gate: checks over a list of examples. Plain Python: no Django here.

``quality_report`` runs every check and returns a JSON-ready report. Each finding is
``{"check", "severity": "blocking" | "warning", "example_id", "detail"}`` (pair findings add
``other_example_id`` and ``jaccard``). Blocking findings stop a snapshot (curation.snapshots);
warnings are stored on it for the reviewer.

Checks, in the order they run on each example:

- ``empty_output`` (blocking): the final assistant turn has no visible character (only
  whitespace, control or format characters such as U+200B); training on it teaches the model
  to answer nothing, and the import rules refuse empty outputs, so it came in some other way.
- ``invalid_format`` (blocking): the conversation breaks curation.formats.validate_messages.
  An example failing either check gets no further per-example check.
- ``chat_template`` (blocking): the tokenizer's chat template does not render the prompt as a
  prefix of the conversation, so training cannot separate prompt from target.
- ``zero_trainable_tokens`` (blocking): at ``max_seq_length`` the prompt fills the sequence and
  no target token is left (training would skip the example; at worst train on nothing).
- ``truncated_target`` (warning): some but not all target tokens are cut at ``max_seq_length``;
  the model never sees the end of the answer, nor its end-of-turn token.
- ``over_context_limit`` (warning): prompt + target is longer than the base model's context.
- ``output_schema`` (warning): the output is not JSON or fails the dataset's
  ``output_json_schema`` (jsonschema, the draft the schema declares; default 2020-12).
- ``pii`` (warning): likely personal data or secrets in a user, assistant or tool message (see
  PII_PATTERNS for the patterns and their limits).
- ``exact_duplicate`` (warning): two examples with identical messages (same content hash).
- ``near_duplicate`` (warning): two examples whose text (system messages left out) has a
  Jaccard similarity of character 5-gram shingles >= NEAR_DUPLICATE_THRESHOLD (curation.near_duplicates).
- ``near_duplicate_input`` (warning): the same test over distinct inputs; such inputs are kept
  in one split (curation.splits.assign_splits).

Token counts use training's own label building (ftml.data.tokenize_for_training,
plain Python), on the conversation as training sees it (the dataset's system prompt prepended).
"""
import json
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy
from jsonschema.exceptions import best_match

from ftml.data import IGNORE_INDEX, tokenize_for_training

from .formats import FormatError, content_hash, validate_messages, with_system_prompt
from .near_duplicates import (
    LSH_THRESHOLD,
    NEAR_DUPLICATE_THRESHOLD,
    NUM_PERM,
    SHINGLE_SIZE,
    NearDuplicate,
    conversation_text,
    message_text,
    near_duplicate_inputs,
    near_duplicates,
)
from .schemas import output_schema_validator, schema_errors
from .splits import input_groups

REPORT_VERSION = 1


BLOCKING, WARNING = "blocking", "warning"


SEVERITY = {
    "empty_output": BLOCKING,
    "invalid_format": BLOCKING,
    "chat_template": BLOCKING,
    "zero_trainable_tokens": BLOCKING,
    "truncated_target": WARNING,
    "over_context_limit": WARNING,
    "output_schema": WARNING,
    "pii": WARNING,
    "exact_duplicate": WARNING,
    "near_duplicate": WARNING,
    "near_duplicate_input": WARNING,
}


MAX_FINDINGS_PER_CHECK = 1000


# Likely PII. Regular expressions (no maintained library in the environment covers all three);
# they flag for a human to look, so they prefer recall and state their limits:
# - email: local@domain.tld; misses obfuscated addresses ("jane at acme dot com"); addresses at
#   the domains reserved for examples (RFC 2606: example.com/.org/.net) are not reported.
# - phone: 9 to 15 digits (E.164 allows at most 15) written with a leading + or in groups
#   separated by spaces, dots, hyphens or a parenthesised area code; misses short local numbers
#   and numbers written without separators or +; may flag ISBNs, account or order numbers in
#   that shape. Dotted IPv4 addresses and ISO dates (2024-05-06 10) are not reported.
# - secret: key formats with a known prefix (OpenAI, Anthropic, AWS, GitHub, Slack, Google,
#   Hugging Face, JWT, PEM private keys), plus any run of 32+ letters, digits, '_' or '-' mixing
#   upper case, lower case and digits; misses secrets without those shapes (short passwords),
#   may flag long random-looking identifiers.
EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})(?![\w-])")


EXAMPLE_DOMAINS = re.compile(r"(?:^|\.)example\.(?:com|org|net)$", re.IGNORECASE)


PHONE = re.compile(
    r"(?<![\w+.-])(?:\+\d{9,15}|(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,8}(?:[ .-]\d{1,8}){1,5})(?![\w-]|\.\d)"
)


NOT_PHONE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}|.*\d{4}-\d{2}-\d{2}")  # an IPv4 address, an ISO date (and time)


SECRET_PREFIXED = re.compile(
    r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{22,}|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{30,}"
    r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)


SECRET_GENERIC = re.compile(r"(?<![\w-])[A-Za-z0-9_-]{32,}(?![\w-])")


PII_PATTERNS = {
    "email": EMAIL.pattern,
    "phone": PHONE.pattern,
    "secret": f"{SECRET_PREFIXED.pattern} | {SECRET_GENERIC.pattern} mixing upper, lower case and digits",
}


INVISIBLE_CATEGORIES = {"Cc", "Cf", "Zs", "Zl", "Zp"}


# Letters (category Lo or So) that render as blank space: Hangul fillers and the braille blank.
INVISIBLE_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


@dataclass(frozen=True)
class QualityExample:
    """One example as the checks see it: its id (named in findings), messages and input hash."""

    id: Hashable
    messages: list
    input_hash: str


@dataclass(frozen=True)
class TokenLimits:
    """The tokenizer to count with and the limits to check against.

    tokenizer: a transformers tokenizer with a chat template (the base model's).
    max_seq_length: tokens per training sequence (ftml.config.LoraConfig).
    context_length: the base model's context window in tokens, or None when unknown.
    name: what the report calls the tokenizer (e.g. the base model's name).
    """

    tokenizer: Any
    max_seq_length: int
    context_length: int | None = None
    name: str = ""


def finding(check: str, example_id, detail: str, **extra) -> dict:
    return {"check": check, "severity": SEVERITY[check], "example_id": example_id, "detail": detail, **extra}


def _visible(text: str) -> bool:
    return any(not ch.isspace() and ch not in INVISIBLE_CHARACTERS
               and unicodedata.category(ch) not in INVISIBLE_CATEGORIES for ch in text)


def _empty_output(messages) -> bool:
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return False
    last = messages[-1]
    return (last.get("role") == "assistant" and not last.get("tool_calls")
            and isinstance(last.get("content"), str) and not _visible(last["content"]))


def _mask(kind: str, text: str) -> str:
    """Enough of a match for a reviewer to find it, without copying the personal data into the report."""
    if kind == "email":
        local, _, domain = text.partition("@")
        return f"{local[:1]}…@{domain}"
    if kind == "phone":
        digits = "".join(ch for ch in text if ch.isdigit())
        return f"…{digits[-2:]} ({len(digits)} digits)"
    return f"{text[:4]}… ({len(text)} characters)"


def pii_matches(text: str) -> list[tuple[str, str]]:
    """[(kind, masked match)] of likely PII in ``text``; kinds: email, phone, secret (see PII_PATTERNS)."""
    found = []
    for match in EMAIL.finditer(text):
        if not EXAMPLE_DOMAINS.search(match.group(1)):
            found.append(("email", _mask("email", match.group(0))))
    for match in PHONE.finditer(text):
        digits = sum(ch.isdigit() for ch in match.group(0))
        if 9 <= digits <= 15 and not NOT_PHONE.match(match.group(0)):
            found.append(("phone", _mask("phone", match.group(0))))
    for match in SECRET_PREFIXED.finditer(text):
        found.append(("secret", _mask("secret", match.group(0))))
    for match in SECRET_GENERIC.finditer(text):
        token = match.group(0)
        if (any(c.islower() for c in token) and any(c.isupper() for c in token) and any(c.isdigit() for c in token)
                and not SECRET_PREFIXED.search(token)):
            found.append(("secret", _mask("secret", token)))
    return found


def _pii_finding(example: QualityExample) -> dict | None:
    found = []
    for position, message in enumerate(example.messages, start=1):
        if message.get("role") != "system":
            found += [f"{kind} {masked} in message {position} ({message['role']})"
                      for kind, masked in pii_matches(message_text(message))]
    if not found:
        return None
    return finding("pii", example.id, "likely personal data or secret: " + "; ".join(found[:5])
                   + (f"; and {len(found) - 5} more" if len(found) > 5 else ""))


def _schema_validator(schema):
    if schema is None:
        return None
    try:
        return output_schema_validator(schema)
    except ValueError as exc:
        raise ValueError(f"the dataset's output_json_schema: {exc}") from exc


def _schema_finding(example: QualityExample, validator) -> dict | None:
    output = example.messages[-1]
    if output.get("tool_calls") or output.get("function_call"):
        return None  # the output is a tool call, not text the schema describes
    try:
        value = json.loads(output["content"])
    except ValueError as exc:
        return finding("output_schema", example.id, f"output is not JSON ({exc}); the dataset's schema expects JSON")
    error = best_match(schema_errors(validator, value))
    if error is None:
        return None
    return finding("output_schema", example.id, f"output fails the dataset's schema at {error.json_path}: "
                                                f"{error.message[:300]}")


def token_counts(tokens: TokenLimits, messages: list[dict]) -> tuple[int, int, int]:
    """(prompt tokens, target tokens, trainable target tokens at ``tokens.max_seq_length``).

    Uses ftml.data.tokenize_for_training, so the counts are those of training: the
    target includes the end-of-turn token. Raises ValueError from it for unusable chat templates.
    """
    cut = tokenize_for_training(tokens.tokenizer, messages, tokens.max_seq_length)
    whole = tokenize_for_training(tokens.tokenizer, messages, sys.maxsize) if cut.truncated else cut
    prompt = sum(1 for label in whole.labels if label == IGNORE_INDEX)
    return prompt, whole.target_tokens, cut.target_tokens


def _token_findings(example: QualityExample, conversation: list[dict], tokens: TokenLimits, counts: list):
    try:
        prompt, target, trainable = token_counts(tokens, conversation)
    except ValueError as exc:
        return [finding("chat_template", example.id, f"cannot build training labels: {exc}")]
    counts.append((prompt, target))
    total, limit = prompt + target, tokens.max_seq_length
    found = []
    if trainable == 0:
        found.append(finding("zero_trainable_tokens", example.id,
                             f"the prompt is {prompt} tokens, so at max_seq_length {limit} none of the {target} "
                             f"target tokens is left to train on; shorten the input"))
    elif trainable < target:
        found.append(finding("truncated_target", example.id,
                             f"{prompt} prompt + {target} target tokens; at max_seq_length {limit} only {trainable} "
                             f"target tokens are trained (the end of the answer is cut)"))
    if tokens.context_length and total > tokens.context_length:
        found.append(finding("over_context_limit", example.id,
                             f"{total} tokens, over the base model's context of {tokens.context_length}"))
    return found


def _stats(values: list[int]) -> dict | None:
    """min, median, p95 (numpy.percentile, linear interpolation), max and total of token counts."""
    if not values:
        return None
    array = numpy.asarray(values)
    return {"min": int(array.min()), "median": round(float(numpy.median(array)), 1),
            "p95": round(float(numpy.percentile(array, 95)), 1), "max": int(array.max()), "total": int(array.sum())}


def quality_report(
    examples: list[QualityExample],
    *,
    tokens: TokenLimits | None = None,
    output_json_schema: dict | None = None,
    system_prompt: str = "",
    input_pairs: list[NearDuplicate] | None = None,
    on_example=None,
) -> dict:
    """Run every check over ``examples`` and return the report.

    Args:
        examples: the examples to check; ids must be sortable and unique.
        tokens: tokenizer and limits for the token checks; None skips them (the report says so).
        output_json_schema: the dataset's JSON Schema for outputs, or None.
        system_prompt: the dataset's system prompt, prepended for token counting as in training.
        input_pairs: near_duplicate_inputs(examples), when the caller already has them.
        on_example: called before each example's checks (a job's progress and cancel point).
    Returns:
        {"version", "settings", "summary", "findings"}: ``summary`` has ``examples``, ``blocking``,
        ``warnings``, ``by_check`` (all findings counted), ``findings_left_out`` (per check, beyond
        MAX_FINDINGS_PER_CHECK), ``tokens`` (``prompt``/``target``/``sequence`` stats in tokens, or
        None) and ``near_duplicate_inputs`` (inputs, pairs, groups, largest group); ``findings``
        are sorted blocking first, then by check and example id.
    Raises:
        ValueError: the schema is not a valid JSON Schema, or the tokenizer has no chat template.
    """
    validator = _schema_validator(output_json_schema)
    if tokens is not None and not getattr(tokens.tokenizer, "chat_template", None):
        raise ValueError(f"the tokenizer {tokens.name or ''} has no chat template; token checks need one")
    findings, counts, valid = [], [], []
    for example in examples:
        if on_example is not None:
            on_example()
        if _empty_output(example.messages):
            findings.append(finding("empty_output", example.id, "the output (last assistant message) has no "
                                                                "visible character"))
            continue
        try:
            example = QualityExample(example.id, validate_messages(example.messages), example.input_hash)
        except FormatError as exc:
            findings.append(finding("invalid_format", example.id, str(exc)))
            continue
        valid.append(example)
        if tokens is not None:
            findings += _token_findings(example, with_system_prompt(example.messages, system_prompt), tokens, counts)
        if validator is not None and (schema_finding := _schema_finding(example, validator)):
            findings.append(schema_finding)
        if pii := _pii_finding(example):
            findings.append(pii)

    by_hash = defaultdict(list)
    for example in valid:
        # The input hash covers the tool settings: the same messages with other tools are another task.
        by_hash[content_hash(example.messages), example.input_hash].append(example.id)
    for ids in by_hash.values():
        ids.sort()
        findings += [finding("exact_duplicate", other, f"identical to example {ids[0]}", other_example_id=ids[0])
                     for other in ids[1:]]
    for pair in near_duplicates({e.id: conversation_text(e.messages) for e in valid}):
        findings.append(finding("near_duplicate", pair.second, f"near-duplicate of example {pair.first} "
                                f"(Jaccard {pair.jaccard:.3f} of character {SHINGLE_SIZE}-grams)",
                                other_example_id=pair.first, jaccard=pair.jaccard))

    if input_pairs is None:
        input_pairs = near_duplicate_inputs(examples)
    first_example = {}
    for example in sorted(examples, key=lambda e: e.id):
        first_example.setdefault(example.input_hash, example.id)
    for pair in input_pairs:
        a, b = first_example[pair.first], first_example[pair.second]
        findings.append(finding("near_duplicate_input", max(a, b), f"its input is a near-duplicate of example "
                                f"{min(a, b)}'s (Jaccard {pair.jaccard:.3f}); both inputs are kept in one split",
                                other_example_id=min(a, b), jaccard=pair.jaccard))
    groups = input_groups(list(first_example), [(p.first, p.second) for p in input_pairs])

    findings.sort(key=lambda f: (f["severity"] != BLOCKING, f["check"], f["example_id"]))
    by_check = Counter(f["check"] for f in findings)
    kept, seen = [], Counter()
    for item in findings:
        seen[item["check"]] += 1
        if seen[item["check"]] <= MAX_FINDINGS_PER_CHECK:
            kept.append(item)
    return {
        "version": REPORT_VERSION,
        "settings": {
            "near_duplicates": {"shingles": f"character {SHINGLE_SIZE}-grams of case-folded text without "
                                            "punctuation, system messages left out",
                                "threshold": NEAR_DUPLICATE_THRESHOLD, "num_perm": NUM_PERM,
                                "lsh_threshold": LSH_THRESHOLD},
            "tokenizer": None if tokens is None else tokens.name,
            "max_seq_length": None if tokens is None else tokens.max_seq_length,
            "context_length": None if tokens is None else tokens.context_length,
            "output_json_schema": output_json_schema is not None,
        },
        "summary": {
            "examples": len(examples),
            "blocking": sum(n for check, n in by_check.items() if SEVERITY[check] == BLOCKING),
            "warnings": sum(n for check, n in by_check.items() if SEVERITY[check] == WARNING),
            "by_check": dict(sorted(by_check.items())),
            "findings_left_out": {check: n - MAX_FINDINGS_PER_CHECK for check, n in sorted(by_check.items())
                                  if n > MAX_FINDINGS_PER_CHECK},
            "tokens": None if tokens is None else {
                "prompt": _stats([p for p, _ in counts]),
                "target": _stats([t for _, t in counts]),
                "sequence": _stats([p + t for p, t in counts]),
            },
            "near_duplicate_inputs": {"inputs": len(first_example), "pairs": len(input_pairs), "groups": len(groups),
                                      "largest_group": max((len(g) for g in groups), default=0)},
        },
        "findings": kept,
    }


def blocking_findings(report: dict) -> list[dict]:
    return [f for f in report["findings"] if f["severity"] == BLOCKING]


def describe_findings(findings: list[dict], total: int | None = None, limit: int = 20) -> str:
    """'example 12: zero_trainable_tokens (...); ...': at most ``limit`` findings, then how many more
    of ``total`` (default: len(findings)) were left out."""
    total = len(findings) if total is None else total
    text = "; ".join(f"example {f['example_id']}: {f['check']} ({f['detail']})" for f in findings[:limit])
    if total > min(limit, len(findings)):
        text += f"; and {total - min(limit, len(findings))} more"
    return text


def describe_report(report: dict) -> list[str]:
    """A stored report in a few lines of text (commands and the demo print them)."""
    if not report:
        return ["quality: no report (the snapshot was made before the quality gate)"]
    summary, settings = report["summary"], report["settings"]
    checks = ", ".join(f"{check} {count}" for check, count in summary["by_check"].items()) or "none"
    lines = [f"quality: {summary['blocking']} blocking, {summary['warnings']} warning(s) ({checks})"]
    tokens = summary.get("tokens")
    if tokens and tokens["sequence"]:
        lines.append(f"tokens per example ({settings['tokenizer']}, max_seq_length {settings['max_seq_length']}): "
                     f"prompt median {tokens['prompt']['median']:g} (max {tokens['prompt']['max']}), target median "
                     f"{tokens['target']['median']:g} (max {tokens['target']['max']}), "
                     f"{tokens['target']['total']} target tokens in all")
    groups = summary["near_duplicate_inputs"]
    lines.append(f"near-duplicate inputs: {groups['pairs']} pair(s); {groups['inputs']} inputs split as "
                 f"{groups['groups']} groups, the largest of {groups['largest_group']}")
    return lines
