"""/metrics shows the continuous audit from its status file, and nothing stale (webhook.admission.metrics)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from webhook.admission.metrics import Metrics


def _status(path: Path, age: float, **extra: object) -> None:
    path.write_text(
        json.dumps(
            {
                "updated": time.time() - age,
                "synced": True,
                "last_full_pass": 1234.5,
                "leader": True,
                "objects": 7,
                "writes": {"create": 2},
                "findings": [
                    ["InvalidUseWaypoint", "deny", "Service", "shop", 3],
                    ["Invented", "warn", "Gadget", "x", 1],
                ],
                **extra,
            }
        )
    )


def test_fresh_status_is_exported_with_fixed_label_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    path = tmp_path / "audit-status.json"
    _status(path, 1)
    text = Metrics(str(path)).exposition()[0].decode()
    assert "waypoint_webhook_audit_up 1.0" in text
    assert (
        'waypoint_webhook_audit_findings{code="InvalidUseWaypoint",kind="Service",namespace="shop",severity="deny"} 3.0'
    ) in text
    assert 'waypoint_webhook_audit_findings{code="other",kind="other",namespace="x",severity="warn"} 1.0' in text
    assert "waypoint_webhook_audit_last_full_pass_timestamp_seconds 1234.5" in text
    assert "waypoint_webhook_audit_leader 1.0" in text
    assert 'waypoint_webhook_audit_report_writes_total{operation="create"} 2.0' in text
    assert "waypoint_webhook_admission_requests_total" in text  # the workers' own metrics are still there


@pytest.mark.parametrize("content", ["stale", "garbage", "missing"])
def test_stale_or_unreadable_status_shows_the_audit_down_and_no_findings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    path = tmp_path / "audit-status.json"
    if content == "stale":
        _status(path, 3600)
    elif content == "garbage":
        path.write_text("{not json")
    text = Metrics(str(path)).exposition()[0].decode()
    assert "waypoint_webhook_audit_up 0.0" in text and "waypoint_webhook_audit_findings{" not in text


def test_without_audit_there_is_no_audit_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert "waypoint_webhook_audit" not in Metrics().exposition()[0].decode()
