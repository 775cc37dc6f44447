"""V1 on the real istiod: a second istiod, on a cluster of its own, started with a MeshConfig that
sets ``serviceEntryVisibility``, against ``check --mesh-config`` on the same objects. Every
ServiceEntry's ``WaypointBound`` condition must agree with the webhook's findings: refused with
``CrossNamespaceWaypointForbidden`` exactly where the webhook reports that code, and the
same-namespace and PUBLIC bindings accepted on both sides."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.controlplane import ControlPlane
from testkit.crds import crd_documents, istio_crds_file
from testkit.harness import EXE, Kubectl, install_crds, patch_status, running_cluster
from tests.oracle.istiod_process import Istiod, start_istiod, stop
from tests.oracle.scenarios import UW, UWN, gw, ns, se

pytestmark = pytest.mark.oracle

MESH = {
    "serviceEntryVisibility": {
        "defaultVisibility": "NAMESPACE",
        "policies": [{"visibility": "PUBLIC", "matchingRules": [{"namespaceSelector": {"matchLabels": {"public": "yes"}}}]}],
    }
}  # fmt: skip


def _objects() -> list[dict[str, Any]]:
    return [
        ns("v1-a"),
        ns("v1-b", {"public": "yes"}),
        ns("v1-c", {UW: "wp", UWN: "v1-i"}),
        ns("v1-i"),
        gw("wp", "v1-i", routes={"from": "All"}),
        gw("local", "v1-a"),
        se("cross", "v1-a", {UW: "wp", UWN: "v1-i"}),  # NAMESPACE visibility, another namespace: refused
        se("same", "v1-a", {UW: "local"}),  # its own namespace: accepted
        se("public", "v1-b", {UW: "wp", UWN: "v1-i"}),  # a PUBLIC policy matches: accepted
        se("inherits", "v1-c"),  # inherited from its Namespace: refused too
    ]


@pytest.fixture(scope="module")
def visibility_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    def setup(kubectl: Kubectl) -> None:
        install_crds(kubectl)
        kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(crd_documents((istio_crds_file(),))))
        kubectl("create", "namespace", "istio-system")

    with running_cluster(tmp_path_factory.mktemp("v1-cp"), setup=setup) as cp:
        yield cp


@pytest.fixture(scope="module")
def visibility_istiod(visibility_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Istiod]:
    proc = start_istiod(visibility_cluster.kubeconfig, tmp_path_factory.mktemp("v1-istiod"), mesh_config=MESH)
    yield proc
    stop(proc.proc)


def _conditions(k: Kubectl) -> dict[str, tuple[str, str]]:
    out = {}
    for item in json.loads(k("get", "serviceentries", "-A", "-o", "json").stdout)["items"]:
        for c in (item.get("status") or {}).get("conditions") or []:
            if c.get("type") == "istio.io/WaypointBound":
                out[item["metadata"]["name"]] = (c.get("status", ""), c.get("reason", ""))
    return out


def test_the_webhook_agrees_with_istiod_on_service_entry_visibility(
    visibility_cluster: ControlPlane, visibility_istiod: Istiod, tmp_path: Path
) -> None:
    k = Kubectl(visibility_cluster.kubeconfig)
    objects = _objects()
    k.apply([{key: v for key, v in o.items() if key != "status"} for o in objects])
    for o in objects:
        if o["kind"] == "Gateway":
            patch_status(k, "Gateway", o["metadata"]["name"], o["metadata"]["namespace"], o["status"])
    names = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceEntry"}
    deadline = time.monotonic() + 60
    while set(conditions := _conditions(k)) < names and time.monotonic() < deadline:
        time.sleep(1)
    assert set(conditions) >= names, (conditions, visibility_istiod.log.read_text()[-2000:])
    (tmp_path / "objects.yaml").write_text(yaml.safe_dump_all(objects))
    (tmp_path / "mesh.yaml").write_text(yaml.safe_dump(MESH))
    p = subprocess.run(
        [
            EXE,
            "check",
            "--as-written",
            "--mesh-config",
            str(tmp_path / "mesh.yaml"),
            "-o",
            "json",
            str(tmp_path / "objects.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    findings = {
        r["name"]: {f["code"] for f in r["findings"]}
        for r in json.loads(p.stdout)["results"]
        if r["kind"] == "ServiceEntry"
    }
    refused = {
        n
        for n, (status, reason) in conditions.items()
        if (status, reason) == ("False", "CrossNamespaceWaypointForbidden")
    }
    flagged = {n for n, codes in findings.items() if "CrossNamespaceWaypointForbidden" in codes}
    accepted = {n for n, (status, _) in conditions.items() if status == "True"}
    assert refused == {"cross", "inherits"}, conditions
    assert flagged == refused, (findings, conditions)
    assert accepted == {"same", "public"} and all(not findings[n] for n in accepted), (findings, conditions)
