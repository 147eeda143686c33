"""Which code a result depends on, as a hash that only that code can change. Pure Python.

A result depends on the modules its command executes: start from the modules that do the work (the
roots: the training loop, a method's module, an architecture's builder, a data set's reader) and
follow their imports of rdml modules, at any depth of the file (imports inside functions too). A
package's `__init__.py` only re-exports (tests/test_structure.py checks it), so a name imported from a
package is followed to the module that defines it, and the line that registers a new module in an
`__init__.py` reaches no other result.

Each module counts by its syntax tree without docstrings (comments never reach the tree), so a
comment, a docstring or a reformat changes no identity. A module that defines a registry
(rdml.registry.Registry) and fills it at module level (the catalogues of architectures and data sets)
counts without those filling statements: a result adds the entries it uses instead (`entries`), so a
new architecture or data set changes no other result.

Snakemake sees an identity as a rule parameter, DVC as a code stamp file (`rdml pipeline code`), and a
checkpoint resumes only under the training code identity that wrote it.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["PACKAGE", "SOURCE", "source_base", "CodeIdentity", "code_identity", "module_closure", "module_sha256", "module_path"]

PACKAGE = Path(__file__).resolve().parent  # where rdml runs from
SOURCE = "src/rdml"  # where a project keeps it (what DVC lists)
ROOT = "rdml"
# The code that computes identities runs beside a result, never into it: it is in none.
MACHINERY = frozenset({"rdml.code", "rdml.dependencies"})


def source_base() -> Path:
    """The source a project's pipeline builds with: its `src/rdml` where the working directory has one
    (what Snakemake and DVC watch), else the installed package."""
    return Path(SOURCE).resolve() if Path(SOURCE).is_dir() else PACKAGE


@dataclass(frozen=True)
class CodeIdentity:
    """The code a result depends on: the modules executed and one hash over them and the entries used."""

    sha256: str
    modules: tuple[str, ...]

    def describe(self) -> dict:
        return {"sha256": self.sha256, "modules": list(self.modules)}


def module_path(name: str, base: Path = PACKAGE) -> Path | None:
    """The file of module `name` ("rdml.train.loop") under `base` (the rdml package folder), or None."""
    if name != ROOT and not name.startswith(ROOT + "."):
        return None
    relative = Path(*name.split(".")[1:])
    for path in (base / relative).with_suffix(".py"), base / relative / "__init__.py":
        if path.is_file():
            return path
    return None


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:]


def _defines_registry(tree: ast.Module) -> bool:
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "Registry":
            return True
    return False


def _is_filling(node: ast.stmt) -> bool:
    """A module-level call statement or loop: how a catalogue adds its entries."""
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)) or isinstance(node, ast.For)


@lru_cache(maxsize=None)
def _parsed(path: Path, stamp: tuple[int, int]) -> tuple[str, tuple[tuple[str, tuple[str, ...]], ...], str]:
    """(hash of the tree without docstrings and registry filling, its rdml imports, the module's own name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []  # (module imported from, names imported) in source order
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((_absolute(node, path), tuple(alias.name for alias in node.names)))
    _strip_docstrings(tree)
    if _defines_registry(tree):
        tree.body = [node for node in tree.body if not _is_filling(node)]
    digest = hashlib.sha256(ast.dump(tree, annotate_fields=True, include_attributes=False).encode()).hexdigest()
    return digest, tuple((m, n) for m, n in found if m == ROOT or m.startswith(ROOT + ".")), path.stem


def _absolute(node: ast.ImportFrom, path: Path) -> str:
    if node.level:  # rdml imports absolutely, so that this scan and a reader both see where a name comes from
        raise ValueError(f"{path}: a relative import (line {node.lineno}); rdml imports modules by their full name")
    return node.module or ""


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_mtime_ns, status.st_size


def _parse(path: Path, read: dict | None = None):
    stamp = _stamp(path)
    if read is not None:
        read[path] = stamp
    return _parsed(path, stamp)


def module_sha256(path: Path) -> str:
    """The hash of one module's syntax tree, docstrings left out (and a catalogue's filling statements)."""
    return _parse(path)[0]


def _targets(module: str, names: tuple[str, ...], base: Path, read: dict, seen: frozenset = frozenset()) -> set[str]:
    """The modules that `from module import names` (or `import module`: no names) executes for what it uses;
    every file read is noted in `read`."""
    path = module_path(module, base)
    if path is None:
        return set()
    if not _is_package(path):
        return {module}
    found: set[str] = set()
    exports = {}  # name → the module the package's __init__ imports it from
    for source, imported in _parse(path, read)[1]:
        for name in imported:
            exports.setdefault(name, source)
    for name in names:
        if module_path(f"{module}.{name}", base) is not None:  # a submodule
            found |= _targets(f"{module}.{name}", (), base, read, seen)
        elif name in exports and (module, name) not in seen:  # re-exported: follow it to where it is defined
            found |= _targets(exports[name], (name,), base, read, seen | {(module, name)})
        else:  # defined in the package's __init__ itself
            found.add(module)
    return found


# (roots, base) → (modules, their files, the stamp of every file read to find them). Planning asks for the
# same few closures once per run (1,303 runs in params.yaml); a closure is walked again only when a file
# it read has changed.
_CLOSURES: dict[tuple, tuple[tuple[str, ...], tuple[Path, ...], dict[Path, tuple | None]]] = {}


def _closure(roots: tuple[str, ...], base: Path) -> tuple[tuple[str, ...], tuple[Path, ...]]:
    cached = _CLOSURES.get((roots, base))
    if cached is not None and all(_stamp(path) == stamp for path, stamp in cached[2].items()):
        return cached[0], cached[1]
    read: dict[Path, tuple | None] = {}
    todo = [m for root in roots for m in _targets(root, (), base, read)]
    done: dict[str, Path] = {}
    while todo:
        module = todo.pop()
        if module in done or module in MACHINERY:
            continue
        done[module] = module_path(module, base)
        for source, names in _parse(done[module], read)[1]:
            todo += sorted(_targets(source, names, base, read) - set(done))
    modules = tuple(sorted(done))
    _CLOSURES[(roots, base)] = (modules, tuple(done[m] for m in modules), read)
    return modules, tuple(done[m] for m in modules)


def module_closure(roots: tuple[str, ...] | list[str], base: Path = PACKAGE) -> tuple[str, ...]:
    """The roots and every rdml module they import, transitively, in sorted order."""
    return _closure(tuple(roots), Path(base))[0]


def code_identity(roots: tuple[str, ...] | list[str], entries: tuple[str, ...] | list[str] = (),
                  base: Path | None = None) -> CodeIdentity:
    """The identity of the code a result runs: the modules reached from `roots` (each by its tree) and
    `entries`, descriptions of the catalogue entries it uses (the repr of an Architecture, say), with the
    modules read under `base` (default: `source_base()`)."""
    base = source_base() if base is None else Path(base)
    modules, files = _closure(tuple(roots), base)
    digest = hashlib.sha256()
    for module, path in zip(modules, files):
        digest.update(f"{module}\0{module_sha256(path)}\n".encode())
    for entry in sorted(set(entries)):
        digest.update(f"entry\0{entry}\n".encode())
    return CodeIdentity(digest.hexdigest(), modules)
