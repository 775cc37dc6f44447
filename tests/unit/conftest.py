"""Every unit test also checks the registry's declarations: a rule that emits a code it does not
declare (docs, the generated policy and the CEL test read the declarations) fails the test that
made it do so."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from webhook.core import dispatch
from webhook.core.findings import Finding
from webhook.core.rules.context import Context
from webhook.core.rules.rule import Rule


def _declared_only(r: Rule[Any]) -> Rule[Any]:
    def check(subject: Any, ctx: Context) -> list[Finding]:
        found = r.check(subject, ctx)
        undeclared = {f.code for f in found} - r.codes
        assert not undeclared, f"rule {r.name} emitted {sorted(undeclared)}, not in its declared codes"
        return found

    check.__name__, check.__doc__ = r.name, r.check.__doc__
    return replace(r, check=check)


@pytest.fixture(autouse=True)
def rules_emit_only_declared_codes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Engines built without a registry of their own take dispatch.REGISTRY when they are made.
    monkeypatch.setattr(dispatch, "REGISTRY", dispatch.REGISTRY.map_rules(_declared_only))
    yield
