"""Server tier: the webhook as deployed (gunicorn gthread over real TLS), docs/rules.md C end to end."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from testkit.builders import review_body
from testkit.harness import eventually
from tests.server.running import ROOT, Server, start_server, stop_server
from webhook.admission import tls

pytestmark = pytest.mark.server
UW = "istio.io/use-waypoint"


def review(
    obj: dict[str, Any] | None, uid: str = "u-1", op: str = "CREATE", old: dict[str, Any] | None = None
) -> bytes:
    return review_body(obj, uid, op, old)


def service(labels: dict[str, str], name: str = "s") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default", "labels": labels}}


GOOD = review(service({UW: "reviews-svc-waypoint"}), uid="good")


def assert_still_serving(srv: Server) -> None:
    r = srv.post("/validate", GOOD)
    assert r.status_code == 200
    assert r.json()["response"] == {"uid": "good", "allowed": True}


def test_good_review_over_tls(server: Server) -> None:
    assert_still_serving(server)


def test_denial_over_tls(server: Server) -> None:
    resp = server.post("/validate", review(service({UW: "None"}), uid="d1")).json()["response"]
    assert resp["uid"] == "d1" and resp["allowed"] is False and resp["status"]["code"] == 403
    assert resp["status"]["details"]["causes"][0]["reason"] == "InvalidUseWaypoint"


@pytest.mark.parametrize(
    ("method", "path", "body", "ctype", "status"),
    [
        ("GET", "/validate", b"", "application/json", 405),
        ("PUT", "/mutate", b"{}", "application/json", 405),
        ("POST", "/validate", b"{}", "text/plain", 415),
        ("POST", "/validate", b"{}", "application/x-www-form-urlencoded", 415),
        ("POST", "/validate", b"{nope", "application/json", 400),
        ("POST", "/validate", b'{"apiVersion": "v1", "kind": "Pod"}', "application/json", 400),
        (
            "POST",
            "/validate",
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}',
            "application/json",
            400,
        ),
        ("POST", "/mutate", b"", "application/json", 400),
    ],
)
def test_bad_requests_then_good_request(
    server: Server, method: str, path: str, body: bytes, ctype: str, status: int
) -> None:
    r = requests.request(
        method, server.url + path, data=body, headers={"Content-Type": ctype}, verify=server.ca, timeout=10
    )
    assert r.status_code == status
    assert r.headers["Content-Type"].startswith("application/json") and "error" in r.json()
    assert_still_serving(server)


def test_body_over_7_mib_is_413_then_good_request(server: Server) -> None:
    r = server.post("/validate", b"{" + b" " * (7 * 1024 * 1024 + 10) + b"}")
    assert r.status_code == 413
    assert_still_serving(server)


def test_chunked_body_over_7_mib_is_413(server: Server) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b" " * (1024 * 1024)

    r = requests.post(
        server.url + "/validate",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        verify=server.ca,
        timeout=20,
    )
    assert r.status_code == 413
    assert_still_serving(server)


def test_malformed_object_is_400_deny_with_uid_then_good_request(server: Server) -> None:
    obj = service({UW: "x"})
    obj["metadata"]["labels"] = ["not", "a", "map"]
    r = server.post("/validate", review(obj, uid="mal"))
    resp = r.json()["response"]
    assert r.status_code == 200 and resp["uid"] == "mal" and resp["status"]["code"] == 400
    assert resp["status"]["details"]["causes"][0]["field"] == "metadata.labels"
    assert_still_serving(server)


def test_truncated_tls_and_garbage_do_not_hurt(server: Server) -> None:
    import socket

    host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
    for payload in (b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\x05hello", b""):
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(payload)
    assert_still_serving(server)


def test_mutation_patch_over_tls(server: Server) -> None:
    gw = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "fresh", "namespace": "default"},
        "spec": {"gatewayClassName": "istio-waypoint"},
    }
    resp = server.post("/mutate", review(gw, uid="m")).json()["response"]
    assert resp["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(resp["patch"]))
    assert {
        "op": "add",
        "path": "/spec/listeners",
        "value": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
    } in ops


def test_connections_are_kept_alive(server: Server) -> None:
    """gthread + keep-alive: many reviews over one TLS connection, as kube-apiserver does."""
    ctx = ssl.create_default_context(cafile=server.ca)
    host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
    conn.connect()
    sock = conn.sock
    for i in range(30):
        conn.request("POST", "/validate", body=GOOD, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("Connection", "").lower() != "close"
        r.read()
        assert conn.sock is sock, f"connection was replaced after {i} requests"
    conn.close()


def test_metrics_aggregate_across_workers(server: Server) -> None:
    def total() -> float:
        text = server.metrics()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("waypoint_webhook_admission_requests_total{") and 'webhook="validate"' in line
        )

    before = total()
    for _ in range(20):  # new connections, so both workers get some
        server.post("/validate", GOOD)
    # /metrics is rendered at most once a second (the probe process's cache)
    assert eventually(lambda: total() - before == 20, 5), total() - before


def test_health_and_readiness(server: Server) -> None:
    assert requests.get(server.url + "/healthz", verify=server.ca, timeout=5).json() == {"status": "ok"}
    assert requests.get(server.url + "/readyz", verify=server.ca, timeout=5).status_code == 200


def test_seed_workflows_through_http(tmp_path: Path) -> None:
    """Each seed manifest is mutated then validated over HTTP, in order, and what is admitted is
    stored into the served state (as the API server would), so later steps see earlier ones."""
    srv = start_server(tmp_path, None, workers=1)
    try:
        n = 0
        for f in sorted((ROOT / "examples" / "seed").glob("*.yaml")):
            for doc in yaml.safe_load_all(f.read_text()):
                n += 1
                m = srv.post("/mutate", review(doc, uid=f"m{n}")).json()["response"]
                assert m["allowed"], m
                if "patch" in m:
                    import jsonpatch

                    doc = jsonpatch.apply_patch(doc, json.loads(base64.b64decode(m["patch"])))
                v = srv.post("/validate", review(doc, uid=f"v{n}")).json()["response"]
                assert v["allowed"] and v["uid"] == f"v{n}", v
                assert all(w.startswith("WaypointNotReady: ") for w in v.get("warnings", [])), v
                if doc["kind"] == "Gateway":  # istiod would deploy it and publish an address
                    doc = {**doc, "status": {"addresses": [{"type": "IPAddress", "value": f"10.0.0.{n}"}]}}
                (srv.state / f"{n:02d}.yaml").write_text(yaml.safe_dump(doc))
                time.sleep(0.5)  # the state poll interval is 0.2 s
        # Final state: the reviews Service is clean, and deleting its waypoint warns it is in use.
        gw = next(yaml.safe_load_all((ROOT / "examples" / "seed" / "04-reviews-svc-waypoint.yaml").read_text()))
        d = srv.post("/validate", review(None, uid="del", op="DELETE", old=gw)).json()
        assert d["response"]["warnings"][0].startswith("WaypointInUse: ")
    finally:
        stop_server(srv)


def test_state_and_certificate_hot_reload(tmp_path: Path) -> None:
    srv = start_server(tmp_path, ROOT / "examples" / "state", workers=1)
    try:
        obj = service({UW: "late-waypoint"})
        warnings = srv.post("/validate", review(obj)).json()["response"]["warnings"]
        assert warnings[0].startswith("WaypointNotFound: ")
        (srv.state / "late.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "Gateway",
                    "metadata": {"name": "late-waypoint", "namespace": "default"},
                    "spec": {
                        "gatewayClassName": "istio-waypoint",
                        "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
                    },
                    "status": {"addresses": [{"value": "10.0.0.1"}]},
                }
            )
        )
        assert eventually(lambda: "warnings" not in srv.post("/validate", review(obj)).json()["response"], 10, 0.1)

        # Rotate to a certificate from a brand-new CA; new connections must get it without a restart.
        old_ca = tmp_path / "old-ca.crt"
        old_ca.write_bytes(Path(srv.ca).read_bytes())
        issued = tls.issue(["localhost"], ["127.0.0.1"])
        tls.write(issued, srv.certs)

        def new_cert_served() -> bool:
            try:
                return requests.get(srv.url + "/healthz", verify=srv.ca, timeout=2).status_code == 200
            except requests.exceptions.SSLError:
                return False

        assert eventually(new_cert_served, 15, 0.1)
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(srv.url + "/healthz", verify=str(old_ca), timeout=2)
        assert srv.proc.poll() is None
    finally:
        stop_server(srv)


def test_serve_refuses_bad_state_with_file_and_line(tmp_path: Path) -> None:
    import subprocess

    from testkit.harness import EXE

    (tmp_path / "bad.yaml").write_text("kind: [\n")
    p = subprocess.run(
        [EXE, "serve", "--state", str(tmp_path), "--port", "1"], capture_output=True, text=True, timeout=30
    )
    assert p.returncode == 2 and "bad.yaml:" in p.stderr


def test_idle_tls_connections_never_starve_requests(server: Server) -> None:
    """Go clients (kube-apiserver) dial connections they may leave idle. With more idle TLS
    connections than threads (4 here), the stock gthread worker deadlocks (gunicorn#2917); ours
    parks them on the poller, so a real request is answered at once."""
    host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
    ctx = ssl.create_default_context(cafile=server.ca)
    idle = []
    try:
        for _ in range(12):  # per worker: 2 workers x 4 threads, with room to spare
            import socket

            raw = socket.create_connection((host, port), timeout=5)
            idle.append(ctx.wrap_socket(raw, server_hostname="127.0.0.1"))  # handshake, then silence
        time.sleep(0.3)
        start = time.monotonic()
        for i in range(8):  # new connections each time: every worker must still have a free thread
            r = requests.post(
                server.url + "/validate",
                data=GOOD,
                headers={"Content-Type": "application/json"},
                verify=server.ca,
                timeout=5,
            )
            assert r.status_code == 200, i
        assert time.monotonic() - start < 5
        # The idle connections are still usable afterwards.
        conn = idle[0]
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(1024).startswith(b"HTTP/1.1 200")
    finally:
        for s in idle:
            s.close()
