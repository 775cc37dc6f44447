"""Configuration precedence (docs/rules.md B3): flags > environment > config file."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.cli.config import ConfigError, Options, build_settings
from webhook.core.findings import Code, Severity


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return str(p)


def test_defaults() -> None:
    s, level = build_settings(Options(), {}, None)
    assert s.policy.preset == "default" and level == "info"
    assert s.excluded_namespaces == {"kube-system", "kube-node-lease"}
    assert s.waypoint_classes == {"istio-waypoint", "istio-agentgateway-waypoint"}  # W2


def test_own_namespace_is_excluded_by_default() -> None:
    s, _ = build_settings(Options(), {"POD_NAMESPACE": "waypoint-webhook"}, None)
    assert "waypoint-webhook" in s.excluded_namespaces


def test_file_env_flag_precedence(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        """
preset: strict
severities: {WaypointNotFound: off, NotCaptured: off}
waypointClasses: [istio-waypoint, acme-waypoint]
logLevel: debug
""",
    )
    env = {"WAYPOINT_WEBHOOK_SEVERITIES": "WaypointNotFound=warn", "WAYPOINT_WEBHOOK_LOG_LEVEL": "warning"}
    s, level = build_settings(Options(severities={"NotCaptured": Severity.DENY}), env, cfg)
    assert s.policy.preset == "strict"  # from the file
    assert s.policy.severity_of(Code.WaypointNotFound) is Severity.WARN  # env beats file
    assert s.policy.severity_of(Code.NotCaptured) is Severity.DENY  # flag beats file
    assert s.waypoint_classes == {"istio-waypoint", "istio-agentgateway-waypoint", "acme-waypoint"}  # added to W2
    assert level == "warning"


def test_config_path_from_env(tmp_path: Path) -> None:
    cfg = write(tmp_path, "unsynced: deny\n")
    s, _ = build_settings(Options(), {"WAYPOINT_WEBHOOK_CONFIG": cfg}, None)
    assert s.policy.severity_of(Code.StateUnavailable) is Severity.DENY


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("presett: strict\n", "presett"),
        ("preset: lenient\n", "preset"),
        ("severities: {NoSuchCode: deny}\n", "NoSuchCode"),
        ("severities: {WaypointNotFound: block}\n", "severities/WaypointNotFound"),
        ("waypointClasses: []\n", "waypointClasses"),
        ("a: [\n", "config file"),
    ],
)
def test_bad_config_files_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        build_settings(Options(), {}, write(tmp_path, text))


def test_bad_env_is_an_error() -> None:
    with pytest.raises(ConfigError, match="environment"):
        build_settings(Options(), {"WAYPOINT_WEBHOOK_SEVERITIES": "Nope=deny"}, None)


def test_pin_waypoint_for_from_each_source(tmp_path: Path) -> None:
    """M2 is off unless a flag, the environment or the file turns it on; flags win."""
    assert build_settings(Options(), {}, None)[0].pin_waypoint_for is False
    assert build_settings(Options(), {"WAYPOINT_WEBHOOK_PIN_WAYPOINT_FOR": "true"}, None)[0].pin_waypoint_for
    cfg = write(tmp_path, "pinWaypointFor: true\n")
    assert build_settings(Options(), {}, cfg)[0].pin_waypoint_for
    assert build_settings(Options(pin_waypoint_for=False), {}, cfg)[0].pin_waypoint_for is False
    with pytest.raises(ConfigError, match="PIN_WAYPOINT_FOR"):
        build_settings(Options(), {"WAYPOINT_WEBHOOK_PIN_WAYPOINT_FOR": "maybe"}, None)
