"""`use ... from "file.circ"`: reuse a circuit, a prompt set or a list from another spec.

Imported declarations keep their own spans, so an error in a used file points into that file.
Used files may use others; a cycle is an error.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from circuitlang.dsl import ast
from circuitlang.dsl.parser import parse
from circuitlang.errors import CircuitlangError, Span, SpecError, flatten
from circuitlang.ir.paths import confined, is_file, read_confined

CIRCUIT_ITEMS = (ast.RoleDecl, ast.MlpDecl, ast.EdgeDecl)
# Parsing costs about 40 microseconds a token; the largest shipped spec is under 10 KB. A spec
# past this size is refused before it is read (a 256 KB spec parses in about 3 s).
MAX_SPEC_BYTES = 256 * 2**10


def read_spec_file(path: Path, root: Path | None = None) -> ast.SpecFile:
    """Read and parse one file. A missing file is a `SpecError` without a span. With `root` (a
    used file), the file opened must be a regular file inside it (checked again once open)."""
    return parse(read_spec_text(path, root), str(path))


def read_spec_text(path: Path, root: Path | None = None) -> str:
    """A spec file's text: UTF-8, a byte-order mark dropped; a byte that is not UTF-8 is an error
    at its line and column."""
    try:
        size = path.stat().st_size
    except (OSError, ValueError):
        size = 0  # reading says why
    if size > MAX_SPEC_BYTES:
        raise SpecError(
            f"the spec is {size:,} bytes, more than the {MAX_SPEC_BYTES:,} a spec file may hold (the spec size limit)",
            Span(path=str(path), line=1, column=1, end_line=1, end_column=2),
            'move long lists into a data file (`from "rows.csv"`) or split the spec with `use`',
        )
    try:
        data = path.read_bytes() if root is None else read_confined(path, root, MAX_SPEC_BYTES, "used file")
    except FileNotFoundError:
        raise SpecError(f"file not found: {path}", None, "check the path") from None
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path itself
        why = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise SpecError(f"cannot read {path}: {why}", None, "check the path") from None
    try:
        text = data.decode("utf-8-sig")  # editors on Windows may add a byte-order mark
    except UnicodeDecodeError as error:
        raise SpecError(
            f"byte 0x{data[error.start]:02x} is not UTF-8 text", _byte_span(path, data, error.start), "save the spec as UTF-8"
        ) from None
    return text


def _byte_span(path: Path, data: bytes, offset: int) -> Span:
    """Line and column (in characters) of the byte at `offset`, from the valid text before it."""
    before = data[:offset].decode("utf-8-sig", errors="replace")
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    return Span(path=str(path), line=line, column=column, end_line=line, end_column=column + 1)


def resolve_uses(spec_file: ast.SpecFile, errors: list[CircuitlangError], root: Path, stack: tuple[Path, ...] = ()) -> list[ast.Item]:
    """The file's items with every `use` line replaced by the declarations it imports (files
    inside `root` only)."""
    here = Path(spec_file.path).resolve()
    items: list[ast.Item] = []
    for item in spec_file.items:
        if isinstance(item, ast.UseDecl):
            items.extend(i for i in _imported(item, root, errors, stack + (here,)) if i not in items)
        else:
            items.append(item)
    return items


def _imported(use: ast.UseDecl, root: Path, errors: list[CircuitlangError], stack: tuple[Path, ...]) -> list[ast.Item]:
    try:
        target = confined(use.path.value, use.path.span, root, "used file")
    except SpecError as error:
        errors.append(error)
        return []
    if target in stack:
        errors.append(
            SpecError(f"'{use.path.value}' uses this file back (a cycle)", use.path.span, "move the shared part into a third file that both use")
        )
        return []
    if not is_file(target):
        errors.append(
            SpecError(f"file not found: '{use.path.value}' (looked in {target})", use.path.span, "paths are relative to the spec file's folder")
        )
        return []
    try:
        other = read_spec_file(target, root)
    except CircuitlangError as error:
        errors.extend(flatten([error]))
        return []
    other_items = resolve_uses(other, errors, root, stack)
    return _select(use, other_items, errors)


def _select(use: ast.UseDecl, items: list[ast.Item], errors: list[CircuitlangError]) -> list[ast.Item]:
    if use.what == "circuit":
        chosen: list[ast.Item] = [i for i in items if isinstance(i, CIRCUIT_ITEMS)]
        if not chosen:
            errors.append(
                SpecError(f"'{use.path.value}' declares no circuit (no role, mlp or edge lines)", use.span, "use a spec that declares roles")
            )
        return chosen
    assert use.name is not None  # the grammar gives `use prompts` and `use list` a name
    if use.what == "list":
        return _named_list(use, use.name, items, errors)
    return _named_prompts(use, use.name, items, errors)


def _named_list(use: ast.UseDecl, name: ast.Ident, items: list[ast.Item], errors: list[CircuitlangError]) -> list[ast.Item]:
    lists = [i for i in items if isinstance(i, ast.ListDecl)]
    found = [i for i in lists if i.name.name == name.name]
    if not found:
        names = ", ".join(i.name.name for i in lists) or "none"
        errors.append(SpecError(f"'{use.path.value}' declares no list '{name.name}'", name.span, f"lists there: {names}"))
    return list(found)


def _named_prompts(use: ast.UseDecl, name: ast.Ident, items: list[ast.Item], errors: list[CircuitlangError]) -> list[ast.Item]:
    """The named prompts block, with the file's lists and its top-level corruption folded in."""
    blocks = [i for i in items if isinstance(i, ast.PromptsDecl)]
    circuit_names = [i.name.name for i in items if isinstance(i, ast.CircuitDecl)]
    wanted = name.name
    found = [b for b in blocks if (b.name.name if b.name else (circuit_names or [""])[0]) == wanted]
    if not found:
        names = ", ".join(b.name.name if b.name else (circuit_names or ["?"])[0] for b in blocks) or "none"
        errors.append(SpecError(f"'{use.path.value}' has no prompt set '{wanted}'", name.span, f"prompt sets there: {names}"))
        return []
    block = found[0]
    outer = [i for i in items if isinstance(i, ast.CorruptDecl)]
    if outer and len(blocks) == 1 and not any(isinstance(s, ast.CorruptDecl) for s in block.body):
        block = replace(block, body=block.body + (outer[0],))
    if block.name is None:
        block = replace(block, name=ast.Ident(wanted, name.span))
    lists = [i for i in items if isinstance(i, ast.ListDecl)]
    return [*lists, block]
