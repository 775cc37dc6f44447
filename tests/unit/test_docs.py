"""docs/rules.md is the users' rules reference: it must cover every finding code, state its
severities as the code table does, give a fix, and its examples must really trigger their code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from webhook.cli.check import CheckOptions, check_documents
from webhook.cluster.files import read_documents
from webhook.core.engine import Settings
from webhook.core.findings import CODES, Code
from webhook.core.index import Index

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "rules.md").read_text()
# Codes that need an UPDATE, a DELETE or an unsynced view: their example is a command, not manifests.
NOT_OFFLINE = {"WaypointInUse", "ConsumersWouldBreak", "StateUnavailable", "PolicyEnforcementLost"}


def sections() -> dict[str, str]:
    parts = re.split(r"^### `([A-Za-z]+)`\s*$", DOC, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_code_has_exactly_one_section() -> None:
    found = re.findall(r"^### `([A-Za-z]+)`", DOC, flags=re.M)
    assert sorted(found) == sorted(CODES), set(found) ^ set(CODES)


@pytest.mark.parametrize("code", sorted(CODES))
def test_section_states_the_severities_and_a_fix(code: str) -> None:
    body = sections()[code]
    info = Code(code).info
    expected = f"**{info.default}**" + (" (strict: deny)." if info.strict_deny else ".")
    if not info.strict_deny:
        expected = f"**{info.default}.**"
    assert body.lstrip().startswith(expected), f"{code}: starts {body.lstrip()[:40]!r}, want {expected!r}"
    assert "\nFix:" in body, code


@pytest.mark.parametrize("code", sorted(set(CODES) - NOT_OFFLINE))
def test_example_triggers_its_code(code: str) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", sections()[code], flags=re.S)
    assert len(blocks) in (1, 2), f"{code}: one yaml example expected, or existing state and an example"
    index = Index()
    if len(blocks) == 2:  # what the cluster already holds, as `check --state` reads it
        for doc in read_documents(Path(f"docs/rules.md#{code}-state"), blocks[0]):
            index.apply(doc.obj)
    docs = read_documents(Path(f"docs/rules.md#{code}"), blocks[-1])
    results = check_documents(docs, index, Settings(), CheckOptions(as_written=True)).results
    last = next(r for r in results if r.source == docs[-1].source)
    got = {str(f.code): str(f.severity) for f in last.findings}
    assert got.get(code) == str(Code(code).info.default), f"{code}: the example's last object gave {got}"


def test_examples_without_manifests_say_how_to_trigger() -> None:
    for code in NOT_OFFLINE:
        assert "Example:" in sections()[code], code


def test_readme_code_table_is_what_codes_prints(capsys: pytest.CaptureFixture[str]) -> None:
    from webhook.cli.commands import main

    assert main(["codes"]) == 0
    printed = capsys.readouterr().out.strip()
    readme = (ROOT / "README.md").read_text()
    start = readme.index("| code | default | strict | when |")
    assert readme[start : readme.index("\n\n", start)] == printed, "regenerate with `waypoint-webhook codes`"
