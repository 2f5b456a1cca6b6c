"""SEC-11 Static analysis: bandit finds nothing unjustified, ruff's bandit rules (S) are clean,
and every dependency is pinned to one exact version."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.processes import BIN, ROOT

SCANNED = ("utils", "app.py", "worker.py", "models.py")
# The in-place justification: bandit's "nosec" with the test id (bandit reads ids up to the next "#"),
# then ruff's matching code and " - " with the reason.
JUSTIFIED_NOSEC = re.compile(r"# nosec B\d{3}(?:,B\d{3})* # noqa: S\d{3}(?:, ?S\d{3})* - \S.{9,}$")
PINNED = re.compile(r"^[A-Za-z0-9_.\-]+(\[[A-Za-z0-9_,\-]+\])?==[A-Za-z0-9_.+\-]+$")
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")


def scanned_files() -> list[Path]:
    """The Python files bandit scans in `make lint`."""
    files: list[Path] = []
    for name in SCANNED:
        path = ROOT / name
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def test_bandit_reports_no_finding_in_the_product_code() -> None:
    result = subprocess.run(
        [str(BIN / "bandit"), "-q", "-f", "json", "-r", *SCANNED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    report = json.loads(result.stdout)
    findings = [f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_severity']}" for r in report["results"]]
    assert findings == [], "fix these, or justify each in place with '# nosec <ID> # noqa: S<nnn> - reason'"
    assert report["errors"] == []
    assert result.returncode == 0


def test_every_bandit_exception_names_its_test_and_says_why() -> None:
    unjustified = []
    for path in scanned_files():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if "nosec" in line and not JUSTIFIED_NOSEC.search(line):
                unjustified.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert unjustified == []


def test_ruff_security_rules_are_clean_on_the_whole_tree() -> None:
    result = subprocess.run(
        [str(BIN / "ruff"), "check", "--select", "S", "--output-format", "json", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    findings = [f"{f['filename']}:{f['location']['row']} {f['code']}" for f in json.loads(result.stdout)]
    assert findings == []
    assert result.returncode == 0


@pytest.mark.parametrize("name", REQUIREMENTS)
def test_every_requirement_is_pinned_to_one_exact_version(name: str) -> None:
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / name).read_text().splitlines()]
    requirements = [line for line in lines if line and not line.startswith("-r ")]
    assert requirements, f"{name} lists its dependencies"
    unpinned = [line for line in requirements if not PINNED.match(line)]
    assert unpinned == [], f"pin with == (no ranges, no bare names): {unpinned}"


def test_the_pin_check_refuses_ranges_and_bare_names() -> None:
    assert PINNED.match("celery[redis,sqlalchemy]==5.7.0")
    for loose in ("flask", "flask>=3.1", "flask~=3.1", "flask==3.*,<4", "flask==3.1 ; python_version<'4'"):
        assert not PINNED.match(loose), loose
