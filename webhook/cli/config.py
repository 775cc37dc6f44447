"""Configuration (docs/rules.md B3): flags, then environment variables, then one config file.

Every source is parsed into the same :class:`Options` shape and merged key by key, so a flag
overrides only what it names. Severity overrides merge per code. The file is YAML, validated
against ``schemas/config.json`` so a typo fails start-up with the offending key, instead of
silently doing nothing (a common complaint about other webhooks).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from webhook.core.engine import DEFAULT_EXCLUDED, Settings
from webhook.core.findings import Policy, Severity, parse_overrides
from webhook.core.rules.context import DEFAULT_WAYPOINT_CLASSES

ENV_PREFIX = "WAYPOINT_WEBHOOK_"


class ConfigError(ValueError):
    """Unusable configuration; the message says which source and key."""


@dataclass
class Options:
    """Partial configuration from one source; None means "not set here"."""

    preset: str | None = None
    severities: dict[str, Severity] = field(default_factory=dict)
    waypoint_classes: list[str] | None = None
    excluded_namespaces: list[str] | None = None
    unsynced: Severity | None = None
    log_level: str | None = None
    pin_waypoint_for: bool | None = None

    def over(self, lower: Options) -> Options:
        """This source's values, falling back to ``lower``'s."""
        return Options(
            preset=self.preset or lower.preset,
            severities={**lower.severities, **self.severities},
            waypoint_classes=self.waypoint_classes if self.waypoint_classes is not None else lower.waypoint_classes,
            excluded_namespaces=(
                self.excluded_namespaces if self.excluded_namespaces is not None else lower.excluded_namespaces
            ),
            unsynced=self.unsynced if self.unsynced is not None else lower.unsynced,
            log_level=self.log_level or lower.log_level,
            pin_waypoint_for=self.pin_waypoint_for if self.pin_waypoint_for is not None else lower.pin_waypoint_for,
        )


def _schema() -> dict[str, Any]:
    text = resources.files("webhook.cli").joinpath("schemas/config.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def from_file(path: str | os.PathLike[str]) -> Options:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"config file {path}: {e}") from e
    data = _unboolean(data)
    import jsonschema  # only when a file is read: its import costs the other commands a tenth of a second

    try:
        jsonschema.validate(data, _schema())
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ConfigError(f"config file {path}: {where}: {e.message}") from None
    try:
        severities = parse_overrides(f"{k}={v}" for k, v in (data.get("severities") or {}).items())
    except ValueError as e:
        raise ConfigError(f"config file {path}: severities: {e}") from None
    return Options(
        preset=data.get("preset"),
        severities=severities,
        waypoint_classes=data.get("waypointClasses"),
        excluded_namespaces=data.get("excludedNamespaces"),
        unsynced=Severity.parse(data["unsynced"]) if "unsynced" in data else None,
        log_level=data.get("logLevel"),
        pin_waypoint_for=data.get("pinWaypointFor"),
    )


def _unboolean(data: Any) -> Any:
    """YAML 1.1 reads an unquoted ``off`` as false; users mean the severity ``off``."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    if isinstance(out.get("severities"), dict):
        out["severities"] = {k: "off" if v is False else v for k, v in out["severities"].items()}
    if out.get("unsynced") is False:
        out["unsynced"] = "off"
    return out


def _csv(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [x.strip() for x in text.split(",") if x.strip()]


def _bool(text: str | None, name: str) -> bool | None:
    if text is None:
        return None
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.strip().lower())
    if value is None:
        raise ValueError(f"{ENV_PREFIX}{name} must be true or false, not {text!r}")
    return value


def from_env(env: Mapping[str, str]) -> Options:
    def get(name: str) -> str | None:
        return env.get(ENV_PREFIX + name)

    try:
        return Options(
            preset=get("PRESET"),
            severities=parse_overrides([get("SEVERITIES") or ""]),
            waypoint_classes=_csv(get("WAYPOINT_CLASSES")),
            excluded_namespaces=_csv(get("EXCLUDED_NAMESPACES")),
            unsynced=Severity.parse(u) if (u := get("UNSYNCED")) else None,
            log_level=get("LOG_LEVEL"),
            pin_waypoint_for=_bool(get("PIN_WAYPOINT_FOR"), "PIN_WAYPOINT_FOR"),
        )
    except ValueError as e:
        raise ConfigError(f"environment: {e}") from None


def build_settings(flags: Options, env: Mapping[str, str], config_file: str | None) -> tuple[Settings, str]:
    """Merge flags > env > file into engine settings; returns them and the log level."""
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    merged = flags.over(from_env(env)).over(from_file(path) if path else Options())
    severities = dict(merged.severities)
    if merged.unsynced is not None:
        severities.setdefault("StateUnavailable", merged.unsynced)
    excluded = set(merged.excluded_namespaces) if merged.excluded_namespaces is not None else set(DEFAULT_EXCLUDED)
    own = env.get("POD_NAMESPACE")
    if own and merged.excluded_namespaces is None:
        excluded.add(own)  # never judge the webhook's own namespace: it must be able to restart
    try:
        policy = Policy(merged.preset or "default", severities)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    # W2: configured classes are added to the built-in ones, never instead of them.
    classes = DEFAULT_WAYPOINT_CLASSES | frozenset(merged.waypoint_classes or ())
    return Settings(policy, classes, frozenset(excluded), bool(merged.pin_waypoint_for)), (merged.log_level or "info")
