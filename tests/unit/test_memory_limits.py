"""The Deployment's memory request and limit agree with what ``make bench-memory`` measured
(bench/results/memory.json, issue 18 item 3): every measured replica fits well inside the limit,
and the request covers the Lease holder on the smaller cluster. Lowering the limit below the
figures, or publishing figures the limit does not cover, fails here."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MIB = {"Mi": 1, "Gi": 1024}


def _mib(quantity: str) -> float:
    return float(quantity[:-2]) * MIB[quantity[-2:]]


def test_the_shipped_limits_follow_the_measured_memory() -> None:
    figures = json.loads((ROOT / "bench" / "results" / "memory.json").read_text())
    deployment = yaml.safe_load((ROOT / "manifests" / "deployment.yaml").read_text())
    resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    limit, request = _mib(resources["limits"]["memory"]), _mib(resources["requests"]["memory"])
    sizes = figures["sizes"]
    assert set(sizes) == {"20k", "100k"}, "both cluster sizes of the issue are measured"
    for size, replicas in sizes.items():
        for role in ("leader", "standby"):
            peak = replicas[role]["peak_pss_mib"]
            assert peak <= 0.6 * limit, f"{size} {role}: peak {peak} MiB is not well inside the {limit} MiB limit"
    assert sizes["20k"]["leader"]["peak_pss_mib"] <= request
    worker = max(sizes["100k"]["leader"]["steady"]["worker"]["rss_mib"])
    assert worker <= 150, f"worker RSS {worker} MiB at 10,000 namespaces / 50,000 consumers (target 150)"
