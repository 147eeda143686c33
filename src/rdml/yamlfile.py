"""The one way rdml reads YAML (config files, params.yaml, reported/*.yaml): safe types only, a key
given twice in one mapping refused with both lines (PyYAML keeps the last one silently, so a study
defined twice would lose its first definition), aliases that expand beyond `MAX_NODES` nodes refused
(a "billion laughs" document is a few lines that every json.dumps or deepcopy of it would expand),
and every YAML error a ConfigError naming the file and line, before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from rdml.keys import ConfigError

__all__ = ["MAX_NODES", "load_yaml", "parse_yaml"]

MAX_NODES = 1_000_000  # nodes of the document with every alias expanded; params.yaml has a few thousand
MERGE = "tag:yaml.org,2002:merge"


class _Refused(yaml.MarkedYAMLError):
    """A document rdml refuses though it is valid YAML."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and aliases that expand without bound."""

    def compose_mapping_node(self, anchor):
        node = super().compose_mapping_node(anchor)
        seen: dict[Any, ScalarNode] = {}
        for key, _ in node.value:  # as written: `<<` merges may be overridden, that is what they are for
            if not isinstance(key, ScalarNode) or key.tag == MERGE:
                continue
            name = self.construct_object(key)
            if name in seen:
                raise _Refused(None, None, f"key {name!r} is given twice in one mapping (lines "
                               f"{seen[name].start_mark.line + 1} and {key.start_mark.line + 1}); give it once",
                               key.start_mark)
            seen[name] = key
        return node

    def compose_document(self):
        node = super().compose_document()
        _expanded_size(node)
        return node


def _expanded_size(root) -> int:
    """Nodes of the document with every alias expanded (each shared node sized once), or _Refused when
    more than MAX_NODES or when an alias sits inside its own anchor (a document without end)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_nodes:
            raise _Refused(None, None, "an alias refers to a node that contains it (a document without end)",
                           node.start_mark)
        open_nodes.add(id(node))
        total = 1
        if isinstance(node, SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, MappingNode):
            total += sum(size(key) + size(value) for key, value in node.value)
        open_nodes.discard(id(node))
        if total > MAX_NODES:
            raise _Refused(None, None, f"its aliases expand to more than {MAX_NODES:,} nodes "
                           "(anchors and aliases are allowed, but not ones that expand without bound)", node.start_mark)
        sizes[id(node)] = total
        return total

    return 0 if root is None else size(root)


def parse_yaml(text: str, name: str) -> Any:
    """The YAML document `text` (from `name`, for messages) as Python values."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except RecursionError:
        raise ConfigError(f"{name} is nested too deeply to read") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}, line {mark.line + 1}" if mark else name
        problem = ": ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise ConfigError(f"{where}: {'not valid YAML: ' if not isinstance(exc, _Refused) else ''}{problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name} is not valid YAML: {exc}") from None


def load_yaml(path: str | Path, what: str = "file") -> Any:
    """The YAML file at `path` as Python values; `what` names it in the message if it cannot be read."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read {what} {str(path)!r}: {reason}") from None
    return parse_yaml(text, str(path))
