"""The error answers of the OpenAPI schema, added to every operation by a drf-spectacular
postprocessing hook (settings.SPECTACULAR_SETTINGS), so a client generated from ``/api/schema/``
accepts every real response, errors included.

Error bodies (ftplatform.rest.exception_handler and DRF's own):

- ``ErrorDetail`` ``{"detail": "...", "field": "...", "position": n}``: 401, 403, 404, 409, and a 400
  from a service rule (``field`` and ``position`` when the rule concerns one place of the request);
- ``FieldErrors`` ``{"<field>": ["...", ...] | {...}}``: a 400 naming the fields a request got wrong.

Which operations answer which codes: every one may answer 400 (a bad parameter or body, or a rule
a service enforces, e.g. downloading an export that is still queued), 401 (not signed in), 403 (the
role's permission) and 404 (an object or page that is not there, or not visible); writes also 409
(a state or version conflict).
"""
from drf_spectacular.openapi import AutoSchema

ERROR_DETAIL = {
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, and what to change."},
        "field": {"type": "string", "description": "The request field the error concerns, when one does."},
        "position": {"type": "integer", "minimum": 1,
                     "description": "Where in that field, 1-based: the message of a conversation, the line of a file."},
    },
    "required": ["detail"],
    "additionalProperties": False,
}
FIELD_ERRORS = {
    "type": "object",
    "description": "Per request field, its problems (a list of messages, or nested per item or key).",
    "additionalProperties": {"anyOf": [{"type": "array"}, {"type": "object"}]},
    "minProperties": 1,
}
DESCRIPTIONS = {
    "400": "The request breaks a rule; the body says which.",
    "401": "Not signed in.",
    "403": "The role may not do this.",
    "404": "No such object (or not visible to this user), or no such page.",
    "409": "The object changed meanwhile, or is in the wrong state for this action.",
}
WRITES = {"post", "put", "patch", "delete"}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def add_error_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook: the ErrorDetail and FieldErrors components, and the error
    responses above on every operation. A 400 an operation documents itself (e.g. a refused
    import's batch) becomes one of that body, ErrorDetail or FieldErrors."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorDetail"], schemas["FieldErrors"] = ERROR_DETAIL, FIELD_ERRORS
    bad_request = {"oneOf": [_ref("ErrorDetail"), _ref("FieldErrors")]}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            codes = ["400", "401", "403", "404"]
            if method in WRITES:
                codes.append("409")
            for code in codes:
                if code not in responses:
                    body = bad_request if code == "400" else _ref("ErrorDetail")
                    responses[code] = {"description": DESCRIPTIONS[code],
                                       "content": {"application/json": {"schema": body}}}
                elif code == "400":
                    for media in responses[code].get("content", {}).values():
                        media["schema"] = {"oneOf": [media["schema"], *bad_request["oneOf"]]}
    return result


class OneObjectSchema(AutoSchema):
    """A ``list`` action that answers one object (a report), not an array: drf-spectacular takes every
    ``list`` for an array of its serializer, which would document a body the view never sends."""

    def _is_list_view(self, serializer=None) -> bool:
        return False
