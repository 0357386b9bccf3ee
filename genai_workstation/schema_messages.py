"""Turn jsonschema errors into messages a workstation owner can act on."""

from __future__ import annotations

import difflib
import json

from jsonschema.exceptions import ValidationError

from .errors import Problem
from .yamlmarks import join

_TYPE_NAMES = {"integer": "a whole number", "string": "text", "boolean": "true or false",
               "object": "a mapping (key: value lines)", "array": "a list", "number": "a number"}


def describe(error: ValidationError, full_schema: dict, marks: dict) -> list[Problem]:
    path = ""
    for part in error.absolute_path:
        path = join(path, part)
    line = marks.get(path)
    keyword = error.validator
    schema = error.schema
    value = error.instance

    if keyword == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        problems = []
        for key in sorted(set(value) - set(allowed)):
            field = join(path, key)
            guess = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.5)
            hint = f"did you mean '{guess[0]}'? " if guess else ""
            problems.append(Problem(field, f"unknown key '{key}'",
                                    f"{hint}allowed here: {', '.join(allowed)}", marks.get(field)))
        return problems
    if keyword == "propertyNames" or (keyword == "not" and "propertyNames" in error.schema_path):
        if keyword == "not":
            hint = f"taken by the built-in stacks: {', '.join(schema['not']['enum'])}"
        else:
            hint = f"use lower-case letters, digits, '-' or '_' ({schema.get('pattern')})"
        return [Problem(join(path, value), f"the name '{value}' is not allowed", hint,
                        marks.get(join(path, value), line))]
    if keyword == "type":
        wanted = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        names = " or ".join(_TYPE_NAMES.get(t, t) for t in wanted)
        return [Problem(path, f"{_show(value)} is {_kind(value)}, expected {names}",
                        _describe_field(schema), line)]
    if keyword == "enum":
        return [Problem(path, f"{_show(value)} is not one of the allowed values",
                        "allowed: " + ", ".join(str(v) for v in schema["enum"]), line)]
    if keyword in ("minimum", "maximum"):
        low, high = schema.get("minimum"), schema.get("maximum")
        allowed = f"from {low} to {high}" if high is not None else f"{low} or more"
        return [Problem(path, f"{value} is out of range", f"allowed: {allowed}", line)]
    if keyword == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [Problem(path, f"the required key '{missing}' is missing",
                        _describe_field(schema.get("properties", {}).get(missing, {})), line)]
    if keyword == "pattern":
        return [Problem(path, f"{_show(value)} does not have the expected form",
                        _describe_field(schema) or f"must match {schema['pattern']}", line)]
    if keyword in ("minItems", "minProperties", "minLength"):
        return [Problem(path, "must not be empty", _describe_field(schema), line)]
    if keyword == "uniqueItems":
        return [Problem(path, "lists the same entry twice", "list each entry once", line)]
    return [Problem(path, error.message, _describe_field(schema), line)]


def _describe_field(schema: dict) -> str:
    return schema.get("description", "")


def _show(value) -> str:
    return json.dumps(value) if not isinstance(value, str) else f"'{value}'"


def _kind(value) -> str:
    for python_type, name in ((bool, "boolean"), (int, "integer"), (float, "number"),
                              (str, "string"), (list, "array"), (dict, "object")):
        if isinstance(value, python_type):
            return _TYPE_NAMES[name] if value is not None else "empty"
    return "empty"
