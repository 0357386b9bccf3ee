"""Every field of inventory/schema.json, given a wrong value, gets a fix line in user terms.

The walk generates, for each field, a value of the wrong type, out of range, not in the enum,
not of the expected form, empty, and each required key missing; a fix line that is empty, holds
a regex, or only repeats the field's description fails the test.
"""

from __future__ import annotations

import copy
import re

from genai_workstation import loader

SCHEMA = loader.schema()
# Names for the free-form keys (hosts, groups, custom stacks).
PLACEHOLDERS = {("hosts",): "ws1", ("groups",): "lab", ("custom",): "music"}
_REGEX = re.compile(r"\^|\\[sdwSDW/.]|\[[^\]]*\][*+?{]|\(\?|\S\$(\s|$|\))")
_WRONG_TYPES = ({"x": 1}, ["x"], "text", 3, True)
_STRINGS = ("a", "org/name", "ABC", "1.2.3", "ab" * 32, "https://a.example", "name==1.0")


def deref(schema: dict) -> dict:
    return loader._deref(schema, SCHEMA)


def fields(schema: dict, path: tuple = ()):
    """(path, raw sub-schema) of every field below `schema`."""
    resolved = deref(schema)
    for key, prop in resolved.get("properties", {}).items():
        if path == () and key == "defaults":
            continue  # the same settings as hosts.<name>
        if path[-1:] == ("lab",) and key == "settings":
            continue
        yield path + (key,), prop
        yield from fields(prop, path + (key,))
    extra = resolved.get("additionalProperties")
    if isinstance(extra, dict):
        name = PLACEHOLDERS.get(path[-1:], "x")
        yield path + (name,), extra
        yield from fields(extra, path + (name,))
    if isinstance(resolved.get("items"), dict):
        yield path + (0,), resolved["items"]
        yield from fields(resolved["items"], path + (0,))


def schema_at(path: tuple) -> dict:
    found = dict(fields(SCHEMA))
    return deref(found[path]) if path else SCHEMA


def valid(schema: dict):
    schema = deref(schema)
    if "default" in schema:
        return copy.deepcopy(schema["default"])
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "string")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "integer":
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    if kind == "array":
        return [valid(schema["items"])] if schema.get("minItems") else []
    if kind == "object":
        return {key: valid(schema["properties"][key]) for key in schema.get("required", [])}
    pattern = schema.get("pattern")
    return next(s for s in _STRINGS if not pattern or re.search(pattern, s))


def document_with(path: tuple, value) -> dict:
    """A valid inventory with `value` at `path` (every object on the way completed)."""
    document = {"hosts": {"ws1": {}}}
    node = document
    for depth, part in enumerate(path[:-1]):
        nxt = path[depth + 1]
        parent_schema = schema_at(path[:depth + 1])
        if isinstance(node, list):
            while len(node) <= part:
                node.append(valid(parent_schema))
            child = node[part]
        else:
            child = node.setdefault(part, valid(parent_schema))
        if isinstance(child, list) and not child and isinstance(nxt, int):
            child.append(valid(schema_at(path[:depth + 2])))
        node = child
    node[path[-1]] = value
    groups = document.get("groups")
    group = groups.get("lab") if isinstance(groups, dict) else None
    if isinstance(group, dict) and path[2:3] != ("hosts",):
        group.setdefault("hosts", ["ws1"])
    return document


def wrong_values(schema: dict):
    """(what, wrong value) for the checks this field has."""
    types = schema.get("type")
    if types:
        allowed = set(types if isinstance(types, list) else [types])
        names = {dict: "object", list: "array", str: "string", int: "integer", bool: "boolean"}
        for value in _WRONG_TYPES:
            if names[type(value)] not in allowed:
                yield "wrong type", value
                break
    if "minimum" in schema:
        yield "below the minimum", schema["minimum"] - 1
    if "maximum" in schema:
        yield "above the maximum", schema["maximum"] + 1
    if "enum" in schema:
        yield "not in the enum", "not-an-option"
    if "pattern" in schema:
        yield "not of the form", next(s for s in ("!! not valid !!", "a/b\\c", "-")
                                      if not re.search(schema["pattern"], s))
    if schema.get("minLength"):
        yield "empty text", ""
    if schema.get("minItems"):
        yield "empty list", []
    if schema.get("minProperties"):
        yield "empty mapping", {}


def cases():
    for path, raw in fields(SCHEMA):
        schema = deref(raw)
        description = raw.get("description") or schema.get("description") or ""
        for what, value in wrong_values(schema):
            yield f"{'.'.join(map(str, path))}: {what}", document_with(path, value), description
        if "pattern" in schema.get("propertyNames", {}):
            document = document_with(path, {"Not A Name!": valid(schema["additionalProperties"])})
            yield f"{'.'.join(map(str, path))}: a badly formed name", document, ""
        for key in schema.get("required", []):
            document = document_with(path, valid(schema))
            holder = document
            for part in path:
                holder = holder[part]
            del holder[key]
            yield f"{'.'.join(map(str, path))}: no {key}", document, ""


def bad_fix(hint: str, description: str) -> str | None:
    hint = hint.strip()
    if not hint:
        return "empty fix line"
    if description and hint.rstrip(".") == description.strip().rstrip("."):
        return "the fix line is only the field's description"
    if _REGEX.search(hint):
        return "the fix line holds a regex"
    return None


def test_the_walk_covers_the_schema():
    names = {".".join(map(str, path)) for path, _ in fields(SCHEMA)}
    assert "hosts.ws1.nvidia_toolkit.version" in names
    assert "hosts.ws1.stacks.forge.instances.0.port" in names
    assert "hosts.ws1.stacks.custom.music.secrets.0" in names
    assert len(names) > 100
    assert sum(1 for _ in cases()) > 150


def test_every_wrong_value_gets_a_fix_in_user_terms():
    failures = []
    for name, document, description in cases():
        problems = loader.schema_problems(document, SCHEMA, {})
        if not problems:
            failures.append(f"{name}: accepted")
        for problem in problems:
            reason = bad_fix(problem.hint, description)
            if reason:
                failures.append(f"{name}: {reason}: {problem.render('inv.yaml')}")
    assert not failures, f"{len(failures)} bad fix lines:\n" + "\n".join(failures)


def test_examples_from_the_field():
    def fix(path: tuple, value) -> str:
        (problem,) = loader.schema_problems(document_with(path, value), SCHEMA, {})
        return problem.hint

    assert "a full version such as 1.17.8" in fix(
        ("hosts", "ws1", "nvidia_toolkit", "version"), "latest")
    forge = {"instances": [{"name": "myia"}]}
    assert "port" in fix(("hosts", "ws1", "stacks", "forge"), forge)
    assert "a port number from 1 to 65535" in fix(
        ("hosts", "ws1", "stacks", "comfyui", "port"), "8188a")


def test_every_pattern_is_explained_in_words():
    """A field with a pattern needs `x-fix`: its form cannot be said from its type."""
    unexplained = [".".join(map(str, path)) for path, raw in fields(SCHEMA)
                   if "pattern" in deref(raw) and "x-fix" not in deref(raw)]
    names = [".".join(map(str, path)) for path, raw in fields(SCHEMA)
             if "pattern" in deref(raw).get("propertyNames", {})
             and "x-fix" not in deref(raw)["propertyNames"]]
    assert unexplained + names == []
