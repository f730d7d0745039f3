"""YAML text read into plain data, noting the line each path was written on, for messages that point at it.

Pure, no I/O. `read_yaml` builds what yaml.SafeLoader would, but refuses
duplicate keys (SafeLoader keeps the last silently), bounds how far aliases may
expand, and fills `lines` with the line of every path (``stages[1].needs[0]``),
so a fault found later in the data can still name its line (`line_of`).
Values at the paths the caller names as text (`as_text`: environment values,
parameter defaults) are the scalar's text as written, never YAML 1.1's
reading of it: `3.10` stays "3.10", not 3.1; `0755` not 493; `yes` not True.
Everything it cannot read raises `YamlFault` with the path and, when known, the line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from .errors import InputError

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_NODES = 100_000
# The tags SafeLoader gives a scalar by its look (`3.10` float, `yes` bool, `~` null…), and str: a text
# path keeps the written text of these. Any other tag is constructed as usual, so an unknown one is refused.
_TEXT_TAGS = frozenset({"tag:yaml.org,2002:str"} | {
    tag for resolvers in yaml.SafeLoader.yaml_implicit_resolvers.values() for tag, _ in resolvers})


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


def read_yaml(text: str, lines: dict[str, int], *, empty: str,
              as_text: Callable[[str], object] | None = None) -> Any:
    """YAML text -> plain data as SafeLoader builds it, noting in `lines` the line of each path.

    A scalar at a path for which `as_text(path)` is true is its text as written
    (after YAML's quoting and block rules: `"a\\tb"` is a tab, `|` keeps the
    newlines), whatever its look or tag says; a value with nothing written
    (`KEY:`) stays None. Lists and mappings there are read as usual (the caller
    refuses them). A text with no document at all raises YamlFault saying
    `empty` (what it should have held).
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None:
            raise YamlFault("", empty)
        return _Reader(lines, as_text or (lambda path: False)).read(root, "")
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

    def __init__(self, lines: dict[str, int], as_text: Callable[[str], object]) -> None:
        self.lines, self.nodes, self.constructor = lines, 0, SafeConstructor()
        self.as_text = as_text

    def read(self, node: yaml.Node, path: str) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        self.nodes += 1
        if self.nodes > _MAX_NODES:  # aliases can expand exponentially ("billion laughs")
            raise YamlFault(path, f"the file expands to more than {_MAX_NODES} values")
        if isinstance(node, yaml.SequenceNode):
            return [self.read(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        if not isinstance(node, yaml.MappingNode):
            if node.tag in _TEXT_TAGS and self.as_text(path) and (node.value or node.style):
                return node.value  # the text as written: the node holds it before the resolver's reading
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
