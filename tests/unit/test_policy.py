"""The fail-open overlay's ValidatingAdmissionPolicies (webhook.core.policies) against the registry: they
enforce exactly the stateless deny rules, say the same codes, and the shipped file is what the
generator prints. (What the API server makes of them is tests/e2e/test_fail_open.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from webhook.cli.commands import POLICY_HEADER, main
from webhook.core.dispatch import all_rules
from webhook.core.findings import Severity
from webhook.core.policies import ENFORCED, POLICIES, documents

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "manifests" / "fail-open" / "policy.yaml"


def test_shipped_policy_is_the_generated_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(POLICY_HEADER)
    assert SHIPPED.read_text() == printed, "regenerate: waypoint-webhook policy > manifests/fail-open/policy.yaml"
    assert [d for d in yaml.safe_load_all(printed) if d] == documents()


def test_the_policies_enforce_exactly_the_stateless_denials() -> None:
    stateless = [r for r in all_rules() if r.stateless]
    assert {c for r in stateless for c in r.codes if c.info.default is Severity.DENY} == ENFORCED
    covered = {k for p in POLICIES for k in p.kinds}
    for r in stateless:
        assert r.kinds <= covered, (r.name, r.kinds - covered)


def test_every_message_starts_with_its_code() -> None:
    for p in POLICIES:
        for v in p.validations:
            assert v.message.startswith(f"'{v.code}: "), v.message[:60]


def test_bindings_exclude_the_install_namespaces_and_the_webhooks_own_objects() -> None:
    docs = documents(["kube-system", "kube-node-lease", "mesh-policy"])
    bindings = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert len(bindings) == len(POLICIES)
    for b in bindings:
        (expr,) = b["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
        assert expr["values"] == ["kube-system", "kube-node-lease", "mesh-policy"]
        (own,) = b["spec"]["matchResources"]["objectSelector"]["matchExpressions"]
        assert own == {"key": "waypoint-webhook.io/self", "operator": "NotIn", "values": ["true"]}
        assert b["spec"]["validationActions"] == ["Deny"]
