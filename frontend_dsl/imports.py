"""``use "std/nn.dl"``: bring the functions of other ``.dl`` files into a program.

A ``use`` names a file by a path in a string.  It is looked for relative to
the directory of the file that says ``use`` (the current directory for
source given as text), then in dlc's shipped library, :data:`LIBRARY_ROOT`
(so ``use "std/nn.dl"`` finds ``frontend_dsl/std/nn.dl``, installed as
package data).  The used file's functions and gradient functions join the
program ahead of the using file's own, as if written there; a file used
twice (directly or through another) is read once.  Mistakes are
:class:`~compiler.diagnostics.DlError`\\ s at the ``use``: a file that is
not found (the places looked in are listed), a cycle of uses (the chain is
shown), a used file holding a model.  A name defined twice, by two files or
by a file and what it uses, is reported by the lowering as any other
duplicate definition, at both places.
"""

from __future__ import annotations

import os
from pathlib import Path

from compiler.diagnostics import ArgumentTypeError, DlError, NameResolutionError

from . import ast
from .parser import parse
from .scope import raise_all

LIBRARY_ROOT = Path(__file__).resolve().parent     # holds std/


def resolve_uses(program: ast.Program) -> ast.Program:
    """``program`` with the items of every file it uses (transitively) in front of its own."""
    loader = _Loader()
    own = loader.expand(program, _directory_of(program.file), [_key(program.file)])
    raise_all(loader.errors)
    return ast.Program(tuple(loader.items + own), program.file)


def candidates(path: str, directory: Path) -> list[Path]:
    """Where ``use "path"`` looks, in order."""
    written = Path(path)
    if written.is_absolute():
        return [written]
    return [directory / written, LIBRARY_ROOT / written]


class _Loader:
    def __init__(self) -> None:
        self.items: list[ast.Item] = []        # items of used files, dependencies first
        self.loaded: set[str] = set()
        self.errors: list[DlError] = []

    def expand(self, program: ast.Program, directory: Path, chain: list[str]) -> list[ast.Item]:
        """``program``'s own items; its uses are loaded into :attr:`items` on the way."""
        own: list[ast.Item] = []
        for item in program.items:
            if isinstance(item, ast.Use):
                try:
                    self.load(item, directory, chain)
                except DlError as e:
                    self.errors.append(e)
            else:
                own.append(item)
        return own

    def load(self, use: ast.Use, directory: Path, chain: list[str]) -> None:

        looked = candidates(use.path, directory)
        found = next((p for p in looked if p.is_file()), None)
        if found is None:
            raise NameResolutionError(f"cannot find '{use.path}' (looked in "
                                      f"{', '.join(_shown(str(p)) for p in looked)})", use.span)
        key = _key(str(found))
        if key in chain:
            cycle = " -> ".join(_shown(k) for k in [*chain[chain.index(key):], key])
            raise NameResolutionError(f"'use' cycle: {cycle}", use.span)
        if key in self.loaded:
            return
        self.loaded.add(key)
        used = parse(read_source(found), str(found))
        models = [i for i in used.items if isinstance(i, ast.ModelDef)]
        if models:
            raise NameResolutionError(f"'{use.path}' holds a model ('{models[0].name.id}'); a used file "
                                      "may hold only functions", use.span,
                                      notes=[f"the model is at {models[0].name.span}"])
        self.items += self.expand(used, found.parent, [*chain, key])


def _directory_of(file: str) -> Path:
    path = Path(file)
    return path.parent if file and not file.startswith("<") else Path.cwd()


def _shown(file: str) -> str:
    """A path as an error shows it: relative to the current directory when inside it."""
    path = Path(file)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return file


def _key(file: str) -> str:
    return str(Path(file).resolve()) if file and not file.startswith("<") else file


def read_source(path: str | Path) -> str:
    """The text of a source file, or a :class:`DlError` saying why it cannot be read."""
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentTypeError(f"argument 'path' must be a path (str or os.PathLike), got "
                                f"{type(path).__name__}")
    file = Path(path)
    if not file.exists():
        raise DlError(f"no such file: {path}")
    if not file.is_file():
        raise DlError(f"not a file: {path}")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DlError(f"cannot read {path}: not UTF-8 text") from None
    except OSError as e:
        raise DlError(f"cannot read {path}: {e.strerror or e}") from None
