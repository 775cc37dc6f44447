"""Every generated artefact is what `make generate` writes (webhook.cli.generate): the README's code
table, the rules reference's index, the webhook configurations (kustomize, strict, Helm) and the
fail-open policies."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from webhook.cli import chart, generate
from webhook.core import forwarding

ROOT = Path(__file__).resolve().parents[2]


def test_no_generated_file_is_stale() -> None:
    stale = generate.stale(ROOT)
    assert not stale, f"stale: {', '.join(stale)}; run `make generate`"


def test_the_shipped_conditions_are_the_forwarding_expressions() -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / "webhooks.yaml").read_text()) if d]
    exprs = {c["name"]: c["expression"] for d in docs for wh in d["webhooks"] for c in wh.get("matchConditions", [])}
    assert exprs["carries-waypoint-labels"] == forwarding.consumer_condition()
    assert exprs["template-carries-waypoint-labels"] == forwarding.template_condition()


def test_a_hand_edit_is_found(tmp_path: Path) -> None:
    for path in (
        *(a.path for a in generate.ARTEFACTS),
        chart.ALERTS,
        chart.DASHBOARD,
    ):  # the artefacts and their inputs
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((ROOT / path).read_text())
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("| `InvalidWaypointFor` | deny |", "| `InvalidWaypointFor` | warn |"))
    assert generate.stale(tmp_path) == ["README.md"]
    assert generate.write(tmp_path) == ["README.md"] and generate.stale(tmp_path) == []


def test_the_charts_shared_namespaces_are_the_cli_ones() -> None:
    """The chart's excludeRelease=auto and `make certs` agree on which namespaces are never owned."""
    from webhook.core.kinds import SHARED_NAMESPACES

    helpers = (ROOT / "charts" / "waypoint-webhook" / "templates" / "_helpers.tpl").read_text()
    (listed,) = re.findall(r"\$shared := list ((?:\"[a-z-]+\" ?)+)", helpers)
    assert sorted(re.findall(r'"([a-z-]+)"', listed)) == sorted(SHARED_NAMESPACES)
