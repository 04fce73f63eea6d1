"""Check a real API answer against what ``/api/schema/`` documents for it."""
import jsonschema


def resolved(schema: dict, node):
    """``node`` of the OpenAPI document with every $ref replaced and OpenAPI 3.0's ``nullable`` as
    JSON Schema's null type, for jsonschema."""
    if isinstance(node, list):
        return [resolved(schema, item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return resolved(schema, schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]])
    done = {key: resolved(schema, value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        done = {"anyOf": [done, {"type": "null"}]}
    return done


def assert_documented(client, path: str, method: str, response) -> None:
    """``response`` (to ``method`` on the schema's ``path``) has a status the schema lists, and a JSON
    body its schema for that status accepts (jsonschema.ValidationError says where not)."""
    schema = client.get("/api/schema/?format=json").json()
    answers = schema["paths"][path][method.lower()]["responses"]
    assert str(response.status_code) in answers, f"{response.status_code} not documented: {sorted(answers)}"
    documented = answers[str(response.status_code)]["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), resolved(schema, documented))
