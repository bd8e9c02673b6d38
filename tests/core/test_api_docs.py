"""docs/API.md lists every ErrorInfo reason the server can send, and only those.

Reasons are part of the contract (clients branch on them), so a new one must be documented
and a documented one must not silently disappear. The server's reasons are read from its
source: every string literal given as a `reason` (keyword argument, parameter default,
assignment to `reason` or `<x>.reason`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from google.rpc import code_pb2

ROOT = Path(__file__).resolve().parents[2]
API_DOC = ROOT / "docs" / "API.md"
REASON = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$")
# A table row of the reasons section: | `PROFILE_NOT_FOUND` | NOT_FOUND | when ... |
ROW = re.compile(r"^\|\s*`([A-Za-z0-9_]+)`\s*\|\s*`?([A-Z_]+)`?\s*\|(.*)\|\s*$")
SECTION = "## Error reasons"


def _literal(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _is_reason_target(target: ast.AST) -> bool:
    return (isinstance(target, ast.Name) and target.id == "reason") or (
        isinstance(target, ast.Attribute) and target.attr == "reason"
    )


def reasons_in_source(root: Path) -> dict[str, list[str]]:
    """Reason -> the places (file:line) that use it, for every .py file under `root`."""
    found: dict[str, list[str]] = {}

    def add(value: str | None, path: Path, node: ast.AST) -> None:
        if value is not None:
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            found.setdefault(value, []).append(where)

    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "reason":
                        add(_literal(keyword.value), path, keyword.value)
            elif isinstance(node, ast.Assign):
                if any(_is_reason_target(target) for target in node.targets):
                    add(_literal(node.value), path, node)
            elif isinstance(node, ast.AnnAssign) and _is_reason_target(node.target):
                add(_literal(node.value), path, node)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                arguments = node.args
                positional = arguments.posonlyargs + arguments.args
                defaults = dict(
                    zip(
                        positional[len(positional) - len(arguments.defaults) :],
                        arguments.defaults,
                        strict=True,
                    )
                )
                defaults.update(
                    (arg, default)
                    for arg, default in zip(
                        arguments.kwonlyargs, arguments.kw_defaults, strict=True
                    )
                    if default is not None
                )
                for arg, default in defaults.items():
                    if arg.arg == "reason":
                        add(_literal(default), path, default)
    return found


def documented_reasons(text: str) -> list[tuple[str, str, str]]:
    """(reason, status code, when) of every row of the reasons table, in order."""
    assert SECTION in text, f"docs/API.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows: list[tuple[str, str, str]] = []
    for line in section.splitlines():
        match = ROW.match(line.strip())
        if match and match.group(1) != "reason":
            rows.append((match.group(1), match.group(2), match.group(3).strip()))
    return rows


def test_the_source_scan_finds_reasons_of_every_kind() -> None:
    """The scan can fail: it sees a keyword, a default and an assignment."""
    used = reasons_in_source(ROOT / "server")
    assert "PROFILE_NOT_FOUND" in used  # reason="..." at a raise site
    assert "REQUEST_FIELD_INVALID" in used  # InvalidArgument's default
    assert "INTERNAL_ERROR" in used  # info.reason = "..." in the interceptor


def test_every_reason_the_server_uses_is_documented_and_every_documented_one_is_used() -> None:
    used = reasons_in_source(ROOT / "server")
    rows = documented_reasons(API_DOC.read_text())
    documented = [reason for reason, _, _ in rows]
    missing = {reason: used[reason] for reason in sorted(set(used) - set(documented))}
    assert not missing, f"reasons the server uses that docs/API.md does not list: {missing}"
    unused = sorted(set(documented) - set(used))
    assert not unused, f"reasons docs/API.md lists that nothing in server/ uses any more: {unused}"
    twice = sorted({reason for reason in documented if documented.count(reason) > 1})
    assert not twice, f"reasons listed more than once in docs/API.md: {twice}"


def test_every_documented_reason_is_specific_and_has_a_status_code_and_a_when() -> None:
    codes = set(code_pb2.Code.keys())
    for reason, code, when in documented_reasons(API_DOC.read_text()):
        assert REASON.match(reason), f"{reason} is not UPPER_SNAKE_CASE"
        assert reason not in codes, f"{reason} merely repeats a status code's name"
        assert code in codes, f"{reason}: {code} is not a google.rpc.Code"
        assert code != "OK", f"{reason}: an error reason travels with an error code"
        assert when, f"{reason}: the row does not say when it is sent"
