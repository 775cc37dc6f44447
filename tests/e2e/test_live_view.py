"""The watch-backed view on its own: missing CRDs, unsynced readiness, relist after 410."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from testkit.builders import consumer, review_body
from testkit.controlplane import ControlPlane, free_port
from testkit.harness import EXE, Kubectl, serve_command, wait_until
from testkit.webhook_process import Webhook
from webhook.cluster.live import RESOURCES, LiveView, Resource

pytestmark = pytest.mark.e2e


def test_missing_crd_is_synced_empty_and_retried(cluster: ControlPlane) -> None:
    widgets = Resource("widgets", "/apis/example.com/v1/widgets", "example.com/v1", "Widget")
    view = LiveView.from_kubeconfig(str(cluster.kubeconfig), resources=[widgets, RESOURCES[2]], missing_retry=0.3)
    view.start()
    try:
        assert view.wait_synced(20) and view.synced()
        assert view.watchers[0].missing and not view.watchers[1].missing
        assert view.namespace_labels("kube-system")["kubernetes.io/metadata.name"] == "kube-system"
    finally:
        view.stop()


@contextmanager
def _synced_view_and_service(cluster: ControlPlane, kubectl: Kubectl, prefix: str) -> Iterator[tuple[LiveView, str]]:
    """A live view of its own, synced, and a fresh namespace holding an unlabelled Service s1."""
    view = LiveView.from_kubeconfig(str(cluster.kubeconfig))
    view.start()
    try:
        assert view.wait_synced(30)
        ns = f"{prefix}-{int(time.time() * 1000) % 100000}"
        kubectl("create", "namespace", ns)
        kubectl("create", "service", "clusterip", "s1", "--tcp=80:80", "-n", ns)
        yield view, ns
    finally:
        view.stop()


def test_view_drops_a_service_that_loses_its_label(cluster: ControlPlane, kubectl: Kubectl, webhook: Webhook) -> None:
    """A Service that loses its use-waypoint label is no longer a consumer."""
    with _synced_view_and_service(cluster, kubectl, "lv") as (view, ns):
        kubectl("label", "service", "s1", "-n", ns, "istio.io/use-waypoint=wp")
        wait_until(lambda: view.consumers_of(ns, "wp"), 10, "the view to see the labelled Service", 0.1)
        assert [r.name for r in view.consumers_of(ns, "wp")] == ["s1"]
        kubectl("label", "service", "s1", "-n", ns, "istio.io/use-waypoint-")
        wait_until(lambda: not view.consumers_of(ns, "wp"), 10, "the view to drop the unlabelled Service", 0.1)
        assert view.consumers_of(ns, "wp") == []


def test_unsynced_server_is_not_ready_and_reports_state_unavailable(tmp_path: Path, cluster: ControlPlane) -> None:
    """An API server that cannot be reached: /readyz 503, syntax checks still deny, references warn."""
    kubeconfig = tmp_path / "dead.kubeconfig"
    text = cluster.kubeconfig.read_text().replace(cluster.url, f"https://127.0.0.1:{free_port()}")
    kubeconfig.write_text(text)
    subprocess.run([EXE, "certs", "--out", str(tmp_path), "--ip", "127.0.0.1"], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen(
        serve_command(port, tmp_path, 1, "--kubeconfig", str(kubeconfig), "--sync-timeout", "1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url, ca = f"https://127.0.0.1:{port}", str(tmp_path / "ca.crt")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = requests.get(url + "/readyz", verify=ca, timeout=1)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert r.status_code == 503 and "cluster view not synced yet" in r.json()["reasons"]

        def review(label: str) -> dict[str, Any]:
            got: dict[str, Any] = requests.post(
                url + "/validate",
                data=review_body(consumer("Service", "s", "default", {"istio.io/use-waypoint": label}), uid="x"),
                verify=ca,
                timeout=5,
                headers={"Content-Type": "application/json"},
            ).json()["response"]
            return got

        assert review("waypoint")["warnings"][0].startswith("StateUnavailable: ")
        assert review("None")["status"]["details"]["causes"][0]["reason"] == "InvalidUseWaypoint"
    finally:
        proc.terminate()
        proc.wait(15)


def test_a_service_with_only_a_canary_label_is_a_consumer(
    cluster: ControlPlane, kubectl: Kubectl, webhook: Webhook
) -> None:
    """R6: a Service inheriting its primary waypoint can still name a canary with its own label; the live
    view sees it, so deleting that canary waypoint counts it (WaypointInUse)."""
    with _synced_view_and_service(cluster, kubectl, "lvc") as (view, ns):
        kubectl("label", "service", "s1", "-n", ns, "istio.io/use-waypoint-canary=v2")
        wait_until(lambda: view.consumers_of(ns, "v2"), 10, "the view to see the canary reference", 0.1)
        assert [(r.name, r.detail) for r in view.consumers_of(ns, "v2")] == [("s1", "canary")]
