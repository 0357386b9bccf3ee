"""Turn jsonschema errors into messages a workstation owner can act on.

Every message gets a fix line saying, in user terms, what is allowed: the field's `x-fix` in
inventory/schema.json where its form needs words (a pattern), else one built from its type,
range and enum. Never a regex, never the field's description alone.
"""

from __future__ import annotations

import difflib
import json

from jsonschema.exceptions import ValidationError

from .errors import Problem
from .loader import _deref
from .yamlmarks import join

_TYPE_NAMES = {"integer": "a whole number", "string": "text", "boolean": "true or false",
               "object": "a mapping (key: value lines)", "array": "a list", "number": "a number",
               "null": "nothing"}
_SHOWN_CHARS = 60


def describe(error: ValidationError, full_schema: dict, marks: dict) -> list[Problem]:
    path = ""
    for part in error.absolute_path:
        path = join(path, part)
    line = marks.get(path)
    keyword = error.validator
    schema = error.schema
    value = error.instance

    if "propertyNames" in error.schema_path:
        field = join(path, value)
        if keyword == "not":
            hint = f"taken by the built-in stacks ({', '.join(schema['not']['enum'])}); " \
                   "choose another name"
        else:
            hint = f"use {_allowed(schema, full_schema)}"
        return [Problem(field, f"the name '{value}' is not allowed", hint,
                        marks.get(field, line))]
    if keyword == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        problems = []
        for key in sorted(set(value) - set(allowed), key=str):
            field = join(path, key)
            guess = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.5)
            hint = f"did you mean '{guess[0]}'? " if guess else ""
            problems.append(Problem(field, f"unknown key '{key}'",
                                    f"{hint}allowed here: {', '.join(allowed)}", marks.get(field)))
        return problems
    return [Problem(path, _message(error), _fix(error, full_schema), line)]


def _message(error: ValidationError) -> str:
    keyword, schema, value = error.validator, error.schema, error.instance
    if keyword == "type":
        wanted = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        names = " or ".join(_TYPE_NAMES.get(t, t) for t in wanted)
        return f"{_show(value)} is {_kind(value)}, expected {names}"
    if keyword == "enum":
        return f"{_show(value)} is not one of the allowed values"
    if keyword in ("minimum", "maximum"):
        return f"{_show(value)} is out of range"
    if keyword == "required":
        return f"the required key '{_missing(error)}' is missing"
    if keyword == "pattern":
        return f"{_show(value)} does not have the expected form"
    if keyword in ("minItems", "minProperties", "minLength"):
        return "must not be empty"
    if keyword == "uniqueItems":
        return "lists the same entry twice"
    return error.message


def _fix(error: ValidationError, full_schema: dict) -> str:
    keyword, schema = error.validator, error.schema
    if keyword == "required":
        missing = _missing(error)
        wanted = _deref(schema.get("properties", {}).get(missing, {}), full_schema)
        return f"add `{missing}:` with {_allowed(wanted, full_schema)}"
    if keyword == "enum":
        return "allowed: " + ", ".join(str(v) for v in schema["enum"])
    if keyword in ("minimum", "maximum"):
        return f"allowed: {_range(schema)}"
    if keyword in ("minItems", "minProperties", "minLength"):
        return f"give {_allowed(schema, full_schema)}, with at least one entry" \
            if keyword != "minLength" else f"give {_allowed(schema, full_schema)}, not empty"
    if keyword == "uniqueItems":
        return "list each entry once"
    if keyword == "type" and "string" in _types(schema) and _is_scalar(error.instance):
        return f"write {_allowed(schema, full_schema)}; put it in quotes so YAML reads it as " \
               "text (e.g. \"1.0\", \"yes\")"
    return f"write {_allowed(schema, full_schema)}"


def _allowed(schema: dict, full_schema: dict) -> str:
    """What the field accepts, in words."""
    schema = _deref(schema, full_schema)
    if schema.get("x-fix"):
        return schema["x-fix"]
    if "enum" in schema:
        return "one of: " + ", ".join(str(v) for v in schema["enum"])
    words = []
    for kind in _types(schema):
        if kind == "integer":
            words.append(f"a whole number {_range(schema)}" if "minimum" in schema
                         else "a whole number")
        elif kind == "array":
            items = schema.get("items")
            words.append(f"a list, each entry {_allowed(items, full_schema)}" if items
                         else "a list")
        elif kind == "object":
            keys = sorted(schema.get("properties", {}))
            words.append("a mapping (key: value lines indented below it)"
                         + (f" with keys among: {', '.join(keys)}" if keys else ""))
        else:
            words.append(_TYPE_NAMES.get(kind, kind))
    return " or ".join(words) or "a value like those in inventory/examples/"


def _is_scalar(value) -> bool:
    return isinstance(value, (bool, int, float)) or value is None


def _types(schema: dict) -> list[str]:
    kind = schema.get("type", [])
    return kind if isinstance(kind, list) else [kind]


def _range(schema: dict) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    return f"from {low} to {high}" if high is not None else f"{low} or more"


def _missing(error: ValidationError) -> str:
    return error.message.split("'")[1] if "'" in error.message else error.message


def _show(value) -> str:
    shown = json.dumps(value) if not isinstance(value, str) else f"'{value}'"
    if len(shown) <= _SHOWN_CHARS:
        return shown
    return shown[:_SHOWN_CHARS - 4] + ("...'" if isinstance(value, str) else " ...")


def _kind(value) -> str:
    for python_type, name in ((bool, "boolean"), (int, "integer"), (float, "number"),
                              (str, "string"), (list, "array"), (dict, "object")):
        if isinstance(value, python_type):
            return _TYPE_NAMES[name]
    return "empty"
