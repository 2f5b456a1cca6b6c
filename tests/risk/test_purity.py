"""utils/risk stays pure: no database, no network, no web framework, no services."""

from __future__ import annotations

import ast
from pathlib import Path

RISK = Path(__file__).resolve().parents[2] / "utils" / "risk"
FORBIDDEN = ("flask", "sqlalchemy", "models", "utils.extensions", "utils.services", "requests", "httpx", "celery")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def is_forbidden(module: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in FORBIDDEN)


def test_risk_modules_import_nothing_impure() -> None:
    modules = sorted(RISK.glob("*.py"))
    assert {path.name for path in modules} >= {"inputs.py", "rules.py", "engine.py", "stops.py"}
    for path in modules:
        bad = {name for name in imported_modules(path) if is_forbidden(name)}
        assert not bad, f"{path.name} imports {sorted(bad)}"
