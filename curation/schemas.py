"""A dataset's output JSON Schema: checked when it is saved, and used without ever fetching.

jsonschema resolves a ``$ref`` to another document by downloading it (``http://``) or reading
it (``file://``) unless told otherwise: a schema typed into the admin or the API could make
the server fetch internal URLs or read local files. Every validator here is built on a
``referencing`` registry that refuses to retrieve anything, so ``$ref`` resolves only inside
the schema itself (and to the JSON Schema meta-schemas jsonschema ships).
"""
import re

from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from referencing import Registry
from referencing.exceptions import NoSuchResource, Unresolvable

from .formats import check_json_value


def _refuse(uri: str):
    raise NoSuchResource(ref=uri)


OFFLINE_REGISTRY = Registry(retrieve=_refuse)


def _refs(value):
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            yield value["$ref"]
        for child in value.values():
            yield from _refs(child)
    elif isinstance(value, list):
        for child in value:
            yield from _refs(child)


def output_schema_validator(schema):
    """A jsonschema validator for ``schema`` (the draft its ``$schema`` names; default 2020-12).

    Raises:
        ValueError: ``schema`` is not a JSON Schema (an object or a boolean), fails its
            meta-schema, or has a ``$ref`` that does not resolve inside the schema (remote
            and file references are refused, never fetched). The message says which.
    """
    if not isinstance(schema, (dict, bool)):
        raise ValueError(f"a JSON Schema is an object (or true/false), got {type(schema).__name__}")
    if isinstance(schema, dict) and not isinstance(schema.get("$schema", ""), str):
        raise ValueError("'$schema' must be a string naming a JSON Schema draft")
    try:
        cls = validator_for(schema)
        cls.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"not a valid JSON Schema: {exc.message}") from exc
    validator = cls(schema, registry=OFFLINE_REGISTRY)
    for ref in _refs(schema):
        try:
            validator._resolver.lookup(ref)  # jsonschema keeps its referencing.Resolver here
        except Unresolvable:
            raise ValueError(f"$ref {ref!r} does not resolve inside the schema; references to other "
                             "documents (http, file) are not followed") from None
    return validator


def schema_errors(validator, value) -> list:
    """``validator.iter_errors(value)`` as a list; an unresolvable ``$ref`` met while validating
    raises ValueError (never a traceback)."""
    try:
        return list(validator.iter_errors(value))
    except Unresolvable as exc:
        raise ValueError(f"the schema's $ref cannot be resolved: {exc}") from None


LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def check_evaluation_settings(language: str, regex_checks, primary_metric: str = "",
                              output_json_schema=None) -> None:
    """A dataset's evaluation settings: an ISO 639 language code (e.g. "en", "zh", "pt-BR"), regex
    checks {name: pattern} (compiled by ftml.metrics.compile_regex_checks, the same function
    evaluation scores them with) and a primary metric: blank (proposed at snapshot time) or one
    its evaluations score (ftml.metrics.scored_metrics of these settings, json_valid always
    allowed: choosing it turns JSON scoring on).

    Raises:
        ValueError: naming the setting and, for a check, its name and the compile error (or the NUL
            or unpaired surrogate no JSON column stores).
    """
    from ftml.metrics import compile_regex_checks, scored_metrics

    if not isinstance(language, str) or not LANGUAGE_CODE.match(language):
        raise ValueError(f"language must be an ISO 639 code such as en, zh or pt-BR, got {language!r}")
    if not isinstance(regex_checks, dict) or not all(isinstance(v, str) for v in regex_checks.values()):
        raise ValueError('regex_checks must be an object of name -> pattern strings, e.g. {"has_price": "\\d"}')
    try:
        check_json_value(regex_checks)
    except ValueError as exc:  # NUL or an unpaired surrogate: no JSON column stores them (PostgreSQL: 500)
        raise ValueError(f"regex_checks{str(exc).removeprefix('$')}") from None
    compile_regex_checks(regex_checks)
    if primary_metric:
        choices = scored_metrics(json_output=True, output_schema=output_json_schema, regex_checks=regex_checks)
        if primary_metric not in choices:
            raise ValueError(f"primary_metric must be blank (proposed from the outputs) or one of "
                             f"{', '.join(choices)}, got {primary_metric!r}"
                             + ("; json_schema_valid needs an output_json_schema"
                                if primary_metric == "json_schema_valid" else ""))
