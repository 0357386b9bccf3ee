"""Read YAML and remember the line of every key, so errors can point at it."""

from __future__ import annotations

import yaml

from .errors import Problem

# Entries walked at most: YAML aliases can make a small file expand to billions of values.
MAX_ENTRIES = 200_000
_STR_TAG = "tag:yaml.org,2002:str"
_KINDS = {"int": "a number", "float": "a number", "bool": "true/false", "null": "empty",
          "timestamp": "a date"}


class TooLarge(Exception):
    """The document expands to more than MAX_ENTRIES entries."""


def load_with_marks(text: str) -> tuple[object, dict[str, int], list[Problem]]:
    """(data, {dotted.path: line}, problems such as duplicate keys)."""
    data = yaml.safe_load(text)
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    marks: dict[str, int] = {}
    problems: list[Problem] = []
    if node is not None:
        _walk(node, "", marks, problems, [0])
    return data, marks, problems


def join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _walk(node, path: str, marks: dict, problems: list, count: list) -> None:
    count[0] += len(node.value) if isinstance(node.value, list) else 1
    if count[0] > MAX_ENTRIES:
        raise TooLarge()
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = join(path, key_node.value)
            if key_node.tag != _STR_TAG and key_node.tag != "tag:yaml.org,2002:merge":
                kind = _KINDS.get(key_node.tag.rsplit(":", 1)[-1], "something other than text")
                problems.append(Problem(
                    child, f"the key {key_node.value} is read as {kind}, not as a name",
                    f"put it in quotes: '{key_node.value}':",
                    key_node.start_mark.line + 1))
            if child in marks:
                problems.append(Problem(
                    child, f"appears twice (first on line {marks[child]})",
                    "keep one; YAML would silently use the last", key_node.start_mark.line + 1))
            marks[child] = key_node.start_mark.line + 1
            _walk(value_node, child, marks, problems, count)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = join(path, index)
            marks[child] = item.start_mark.line + 1
            _walk(item, child, marks, problems, count)
