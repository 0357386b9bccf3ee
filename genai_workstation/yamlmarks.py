"""Read YAML and remember the line of every key, so errors can point at it."""

from __future__ import annotations

import yaml

from .errors import Problem


def load_with_marks(text: str) -> tuple[object, dict[str, int], list[Problem]]:
    """(data, {dotted.path: line}, problems such as duplicate keys)."""
    data = yaml.safe_load(text)
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    marks: dict[str, int] = {}
    problems: list[Problem] = []
    if node is not None:
        _walk(node, "", marks, problems)
    return data, marks, problems


def join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _walk(node, path: str, marks: dict, problems: list) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = join(path, key_node.value)
            if child in marks:
                problems.append(Problem(
                    child, f"appears twice (first on line {marks[child]})",
                    "keep one; YAML would silently use the last", key_node.start_mark.line + 1))
            marks[child] = key_node.start_mark.line + 1
            _walk(value_node, child, marks, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = join(path, index)
            marks[child] = item.start_mark.line + 1
            _walk(item, child, marks, problems)
