"""YAML text read into plain data, noting the line each path was written on, for messages that point at it.

Pure, no I/O. `read_yaml` builds what yaml.SafeLoader would, but refuses
duplicate keys (SafeLoader keeps the last silently), bounds how far aliases may
expand, and fills `lines` with the line of every path (``stages[1].needs[0]``),
so a fault found later in the data can still name its line (`line_of`).
Everything it cannot read raises `YamlFault` with the path and, when known, the line.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from .errors import InputError

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_NODES = 100_000


class YamlFault(InputError):
    """YAML text that cannot be read: where (`path`, `line` when known) and the `problem`."""

    def __init__(self, path: str, problem: str, line: int | None = None) -> None:
        super().__init__(f"{path}: {problem}", field=path)
        self.path, self.problem, self.line = path, problem, line


def join_path(path: str, key: Any) -> str:
    """The path of `key` inside the mapping at `path` (``stages[1]`` + ``name``)."""
    return f"{path}.{key}" if path else str(key)


def line_of(lines: dict[str, int], path: str) -> int | None:
    """The line of `path`, or of its nearest parent that was written (a missing key points at its mapping)."""
    while path not in lines:
        if not path:
            return None
        path = path[:max(path.rfind("[") if path.endswith("]") else path.rfind("."), 0)]
    return lines[path]


def read_yaml(text: str, lines: dict[str, int], *, empty: str) -> Any:
    """YAML text -> plain data as SafeLoader builds it, noting in `lines` the line of each path.

    A text with no document at all raises YamlFault saying `empty` (what it should have held).
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None:
            raise YamlFault("", empty)
        return _Reader(lines).read(root, "")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = f" ({exc.context})" if exc.context else ""
        raise YamlFault("", f"not valid YAML: {exc.problem}{context}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlFault("", f"not valid YAML: {exc}") from None
    except RecursionError:  # also an alias inside its own anchor: `&a [*a]`
        raise YamlFault("", "not valid YAML: nested too deeply, or an alias refers to itself") from None


class _Reader:
    """Walks the composed nodes: keeps lines, refuses duplicate keys, bounds alias expansion."""

    def __init__(self, lines: dict[str, int]) -> None:
        self.lines, self.nodes, self.constructor = lines, 0, SafeConstructor()

    def read(self, node: yaml.Node, path: str) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        self.nodes += 1
        if self.nodes > _MAX_NODES:  # aliases can expand exponentially ("billion laughs")
            raise YamlFault(path, f"the file expands to more than {_MAX_NODES} values")
        if isinstance(node, yaml.SequenceNode):
            return [self.read(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        if not isinstance(node, yaml.MappingNode):
            return self.scalar(node, path)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key, line = self.scalar(key_node, path), key_node.start_mark.line + 1
            if key in seen:
                self.lines[join_path(path, key)] = line
                raise YamlFault(join_path(path, key), f"key {key!r} appears twice (first on line {seen[key]})")
            seen[key] = line
        self.constructor.flatten_mapping(node)  # `<<: *anchor` merges, as SafeLoader does
        out = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, path)
            self.lines[join_path(path, key)] = key_node.start_mark.line + 1
            out[key] = self.read(value_node, join_path(path, key))
        return out

    def scalar(self, node: yaml.Node, path: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise YamlFault(path, "a key must be a plain value, not a list or mapping")
        try:
            return self.constructor.construct_object(node)
        except (ValueError, TypeError) as exc:  # `!!int abc`; tags SafeLoader lacks raise a MarkedYAMLError
            raise YamlFault(path, f"cannot read this value: {exc}", node.start_mark.line + 1) from None
