"""The pod tier: the image built from the Dockerfile, run as the shipped Deployment's pod.

The container gets exactly the Deployment's args, env, securityContext, volumes and limits (read
from the rendered manifests, see :mod:`tests.pod.podspec`), a real ServiceAccount token for the
shipped RBAC, and in-cluster configuration pointing at a kube-apiserver of its own. Where podman
cannot run, every test here fails with the reason: the tier never skips.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from testkit.controlplane import ControlPlane
from testkit.harness import EXE, Kubectl, apply_identity, install_crds, install_report_crds, running_cluster
from tests.pod import image as images
from tests.pod.container import CONTAINER, MAX_LIFETIME, MEASURED, Pod
from tests.pod.podspec import pod_run


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASURED:
        terminalreporter.write_sep("-", "pod tier measurements")
        for k, v in MEASURED.items():
            terminalreporter.write_line(f"{k}: {v}")


@pytest.fixture(scope="session")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    images.require_tools()
    return images.podman_env(tmp_path_factory.mktemp("podman"))


@pytest.fixture(scope="session")
def built_image(podman_env: dict[str, str]) -> str:
    t = time.monotonic()
    tag = images.build(podman_env)
    MEASURED["image build (s)"] = f"{time.monotonic() - t:.0f}"
    MEASURED["image size (MB)"] = f"{images.size_bytes(podman_env, tag) / 1e6:.0f}"
    return tag


@pytest.fixture(scope="module")
def pod_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    def setup(kubectl: Kubectl) -> None:
        install_crds(kubectl)
        install_report_crds(kubectl)  # the continuous audit writes PolicyReports from the container

    with running_cluster(tmp_path_factory.mktemp("pod-cp"), setup=setup) as cp:
        yield cp


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _measure_startup(pod: Pod) -> None:
    """Poll the probes' endpoints as kubelet would (its timeout, no certificate check), every
    100 ms, and record when each first answered 200, in seconds after the container started."""
    budget = sum(
        p.get("initialDelaySeconds", 0) + p.get("periodSeconds", 10) * p.get("failureThreshold", 3)
        for p in pod.run.probes.values()
    )
    deadline = pod.started + budget + 10
    while len(pod.first_ok) < len(pod.run.probes) and time.monotonic() < deadline:
        for name in pod.run.probes:
            if name in pod.first_ok:
                continue
            try:
                if pod.probe(name).status_code == 200:
                    pod.first_ok[name] = time.monotonic() - pod.started
            except requests.RequestException:
                pass
        state = images.podman(pod.env, "inspect", "--format", "{{.State.Status}}", CONTAINER, check=False)
        if state.stdout.strip() not in ("running", "created", ""):
            raise AssertionError(f"container {state.stdout.strip()}:\n{pod.logs()[-4000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def pod(
    podman_env: dict[str, str], built_image: str, pod_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pod]:
    kubectl = Kubectl(pod_cluster.kubeconfig)
    manifests = apply_identity(kubectl)
    dep = next(d for d in manifests if d["kind"] == "Deployment")
    ns, sa = dep["metadata"]["namespace"], dep["spec"]["template"]["spec"]["serviceAccountName"]
    token = kubectl("create", "token", sa, "-n", ns, "--duration=2h").stdout.strip()
    work = tmp_path_factory.mktemp("pod")
    certs = work / "certs"
    subprocess.run(
        [EXE, "certs", "--out", str(certs), "--ip", "127.0.0.1", "--dns", f"waypoint-webhook.{ns}.svc"],
        check=True,
        capture_output=True,
    )
    tls = {
        "tls.crt": (certs / "tls.crt").read_bytes(),
        "tls.key": (certs / "tls.key").read_bytes(),
        "ca.crt": (certs / "ca.crt").read_bytes(),
    }
    secret_name = next(v["secret"]["secretName"] for v in dep["spec"]["template"]["spec"]["volumes"] if "secret" in v)
    run = pod_run(
        manifests,
        built_image,
        work,
        {secret_name: tls},
        token,
        (pod_cluster.workdir / "pki" / "ca.crt").read_bytes(),
        "127.0.0.1",
        pod_cluster.port,
        name=CONTAINER,
    )
    images.podman(podman_env, "rm", "--force", "--time=0", CONTAINER, check=False)  # a stale one of ours
    for name, port in run.ports.items():
        assert _port_free(port), f"port {port} (the Deployment's containerPort {name}) is in use on this machine"
    args = list(run.args)
    args.insert(args.index("--detach") + 1, f"--timeout={MAX_LIFETIME}")
    images.podman(podman_env, *args)
    # Measure from the runtime's own start time, not from when podman returned.
    started_ns = int(
        images.podman(podman_env, "inspect", "--format", "{{.State.StartedAt.UnixNano}}", CONTAINER).stdout.strip()
    )
    handle = Pod(podman_env, run, kubectl, certs / "ca.crt", time.monotonic() - (time.time() - started_ns / 1e9))
    try:
        _measure_startup(handle)
        if "readinessProbe" in handle.first_ok:
            MEASURED["container start to ready (s)"] = f"{handle.first_ok['readinessProbe']:.1f}"
        yield handle
    finally:
        (work / "container.log").write_text(handle.logs())
        images.podman(podman_env, "rm", "--force", "--time=0", CONTAINER, check=False)
