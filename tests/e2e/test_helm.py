"""The Helm chart with the real helm (issue 19, items 1, 2, 4 and 6): lint, the values schema, the
same objects as the kustomize install, failure policies computed as the Python computes them, and
install, upgrade and uninstall on a real kube-apiserver with admission working through kubectl."""

from __future__ import annotations

import base64
import copy
import os
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from testkit.controlplane import ControlPlane, free_port, spawn
from testkit.crds import MONITORING_CRDS, monitoring_crd_files
from testkit.harness import EXE, Kubectl, running_cluster, serve_command, wait_until
from testkit.helm import CHART, Helm, helm_bin, loopback_renderer
from testkit.webhook_process import ROOT, start_webhook
from webhook.core.findings import Policy, Severity
from webhook.core.policies import POLICIES
from webhook.core.routing import ROUTES

pytestmark = pytest.mark.e2e

TOOL_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
)
WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_cluster(tmp_path_factory.mktemp("helm")) as c:
        yield c


@pytest.fixture(scope="module")
def helm(cp: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(cp.kubeconfig, helm_bin(), tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def k(cp: ControlPlane) -> Kubectl:
    return Kubectl(cp.kubeconfig)


def by_key(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs}


def normalised(doc: dict[str, Any]) -> dict[str, Any]:
    """What the two tools legitimately differ in: helm's release labels, the certificates."""
    d = copy.deepcopy(doc)
    labels = d["metadata"].get("labels", {})
    for key in TOOL_LABELS:
        labels.pop(key, None)
    if d["kind"] == "Secret":
        d["data"] = sorted(d["data"])
    for wh in d.get("webhooks", []):
        wh["clientConfig"].pop("caBundle", None)
    if d["kind"] == "Deployment":  # kustomize's patch puts the patched variable first; no $(VAR) refers to another
        for c in d["spec"]["template"]["spec"]["containers"]:
            c["env"].sort(key=lambda e: e["name"])
    return d


def test_helm_lint_strict(helm: Helm) -> None:
    out = helm("lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("replicas=2", "replicas"),  # a typo of replicaCount
        ("preset=strickt", "preset"),
        ("severities.WaypointInUze=deny", "WaypointInUze"),
        ("severities.MalformedObject=warn", "MalformedObject"),  # cannot be changed
        ("webhook.failurePolicy=Open", "failurePolicy"),
        ("namespaces.excluded[0]=Bad_NS", "excluded"),
        ("image.digest=sha256:abc", "digest"),
    ],
)
def test_the_schema_refuses_a_bad_value_naming_it(helm: Helm, value: str, named: str) -> None:
    p = helm("template", "x", str(CHART), "--kube-version", "1.36.0", "--set", value, check=False)
    assert p.returncode != 0 and named in p.stderr, p.stderr


def test_the_defaults_render_the_objects_of_the_kustomize_install(helm: Helm, k: Kubectl, tmp_path: Path) -> None:
    subprocess.run([EXE, "certs", "--namespace", "waypoint-webhook", "--out", str(tmp_path)], check=True, cwd=ROOT)
    kustomized = by_key([d for d in yaml.safe_load_all(k("kustomize", str(tmp_path)).stdout) if d])
    charted = by_key(helm.template())
    # The chart never creates a namespace (helm install --create-namespace does, unlabelled).
    assert set(kustomized) - set(charted) == {("Namespace", "", "waypoint-webhook")}
    assert set(charted) == set(kustomized) - {("Namespace", "", "waypoint-webhook")}
    for key, doc in charted.items():
        assert normalised(doc) == normalised(kustomized[key]), key


CASES: list[tuple[list[str], Policy, bool]] = [
    ([], Policy(), True),
    (["--set", "preset=strict"], Policy("strict"), True),
    (["--set", "severities.WaypointInUse=deny"], Policy(overrides={"WaypointInUse": Severity.DENY}), True),
    (
        ["--set", "preset=strict", "--set", "severities.WaypointInUse=warn"],
        Policy("strict", {"WaypointInUse": Severity.WARN}),
        True,
    ),
    (["--set", "unsynced=deny"], Policy(overrides={"StateUnavailable": Severity.DENY}), True),
    (["--set", "webhook.failurePolicy=Ignore"], Policy(), False),
]


@pytest.mark.parametrize(("args", "policy", "closed"), CASES)
def test_failure_policies_are_the_registrys(helm: Helm, args: list[str], policy: Policy, closed: bool) -> None:
    (vwc,) = [d for d in helm.template(*args) if d["kind"] == "ValidatingWebhookConfiguration"]
    got = {wh["name"]: wh["failurePolicy"] for wh in vwc["webhooks"]}
    assert got == {r.name: r.failure_policy(policy) if closed else "Ignore" for r in ROUTES}


def test_an_install_into_istio_system_neither_owns_nor_excludes_it(helm: Helm) -> None:
    docs = helm.template(namespace="istio-system")
    assert not [d for d in docs if d["kind"] == "Namespace"]
    for doc in docs:
        for wh in doc.get("webhooks", []):
            assert wh["namespaceSelector"]["matchExpressions"][0]["values"] == ["kube-system", "kube-node-lease"]
            assert wh["objectSelector"]["matchExpressions"][0]["key"] == "waypoint-webhook.io/self"
    quota = [d for d in docs if d["kind"] == "ResourceQuota"]
    assert quota and quota[0]["spec"]["scopeSelector"]["matchExpressions"][0]["values"] == ["system-cluster-critical"]
    for doc in docs:
        if doc["kind"] in WEBHOOK_KINDS:
            assert doc["metadata"]["annotations"]["admissions.enforcer/disabled"] == "true"


def test_cert_manager_and_an_existing_secret(helm: Helm) -> None:
    docs = helm.template("--set", "certificates.mode=cert-manager", namespace="mesh-policy")
    kinds = sorted(d["kind"] for d in docs if d["apiVersion"].startswith("cert-manager.io"))
    assert kinds == ["Certificate", "Certificate", "Issuer", "Issuer"]
    for doc in docs:
        if doc["kind"] in WEBHOOK_KINDS:
            assert (
                doc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
                == "mesh-policy/waypoint-webhook-serving"
            )
            assert all("caBundle" not in wh["clientConfig"] for wh in doc["webhooks"])
    serving = next(
        d for d in docs if d["kind"] == "Certificate" and d["metadata"]["name"] == "waypoint-webhook-serving"
    )
    assert serving["spec"]["dnsNames"][0] == "waypoint-webhook.mesh-policy.svc"
    p = helm("template", "x", str(CHART), "--kube-version", "1.36.0", "--set", "certificates.mode=secret", check=False)
    assert p.returncode != 0 and "is required with certificates.mode=secret" in p.stderr


def webhook_objects(k: Kubectl) -> list[str]:
    kinds = "validatingwebhookconfiguration,mutatingwebhookconfiguration,validatingadmissionpolicy,"
    kinds += "validatingadmissionpolicybinding,clusterrole,clusterrolebinding"
    return [n for n in k("get", kinds, "-o", "name").stdout.split() if "waypoint-webhook" in n]


def deny_message(k: Kubectl, *args: str) -> str:
    return k(*args, "--dry-run=server", check=False).stderr


def test_install_upgrade_uninstall(cp: ControlPlane, helm: Helm, k: Kubectl, tmp_path: Path) -> None:
    """The README's lifecycle, in its order, into a non-default namespace: install fail-open, close
    once a replica answers, upgrade, open again, uninstall. The only change to what the chart
    renders is the transport (clientConfig.service -> a loopback URL to the real webhook, by a
    helm post-renderer)."""
    k("create", "namespace", "mesh-policy")
    k("create", "namespace", "tenant")
    certs = tmp_path / "w" / "certs"
    subprocess.run([EXE, "certs", "--out", str(certs), "--ip", "127.0.0.1"], check=True, capture_output=True)
    k("create", "secret", "tls", "wh-tls", "-n", "mesh-policy", f"--cert={certs}/tls.crt", f"--key={certs}/tls.key")
    port = free_port()
    common = [str(CHART), "-n", "mesh-policy", "--post-renderer", str(loopback_renderer(tmp_path / "r", port))]
    common += ["--set", "certificates.mode=secret", "--set", "certificates.secret.name=wh-tls"]
    common += ["--set", f"certificates.secret.caBundle={base64.b64encode((certs / 'ca.crt').read_bytes()).decode()}"]
    helm("install", "waypoint-webhook", *common, "--set", "webhook.failurePolicy=Ignore")
    assert {wh["failurePolicy"] for wh in _vwc(k)["webhooks"]} == {"Ignore"}  # nothing refused while no replica runs
    jsonpath = (
        "jsonpath={.spec.template.spec.containers[0].env[?(@.name=='WAYPOINT_WEBHOOK_EXCLUDED_NAMESPACES')].value}"
    )
    excluded = k("get", "deployment", "waypoint-webhook", "-n", "mesh-policy", "-o", jsonpath).stdout
    assert excluded == "kube-system,kube-node-lease,mesh-policy"
    wh = start_webhook(
        cp, k, tmp_path / "w", namespace="mesh-policy", port=port,
        env_extra={"WAYPOINT_WEBHOOK_EXCLUDED_NAMESPACES": excluded},
    )  # fmt: skip
    try:
        _admission_and_upgrades(helm, k, common)
    finally:
        wh.stop(15)
    out = helm("uninstall", "waypoint-webhook", "-n", "mesh-policy", "--debug").stderr
    # helm deletes the webhook configurations after the Service: why the README opens them first.
    deletes = [line.split('"')[1:3] for line in out.splitlines() if "Starting delete for" in line]
    kinds = [kind.strip() for _, kind in deletes]
    assert kinds.index("ValidatingWebhookConfiguration") > kinds.index("Service"), kinds
    assert webhook_objects(k) == []  # no configuration, policy, binding or role left behind
    assert "wh-tls" in k("get", "secret", "-n", "mesh-policy", "-o", "name").stdout  # not the chart's to delete


def _admission_and_upgrades(helm: Helm, k: Kubectl, common: list[str]) -> None:
    helm("upgrade", "waypoint-webhook", *common, "--set", "webhook.failurePolicy=Fail")
    label = ("label", "namespace", "tenant", "istio.io/use-waypoint=None")
    wait_until(lambda: "InvalidUseWaypoint" in deny_message(k, *label), 60, "a denial through the chart's webhook", 0.5)
    assert (
        k("label", "namespace", "tenant", "istio.io/use-waypoint=wp", "--dry-run=server", check=False).returncode == 0
    )
    policies = {wh["name"]: wh["failurePolicy"] for wh in _vwc(k)["webhooks"]}
    assert policies["gateway-deletes.validate.waypoint-webhook.io"] == "Ignore"
    # Upgrade to the strict preset: the server's flag and the entries it closes, together.
    helm("upgrade", "waypoint-webhook", *common, "--set", "preset=strict")
    policies = {wh["name"]: wh["failurePolicy"] for wh in _vwc(k)["webhooks"]}
    assert policies["gateway-deletes.validate.waypoint-webhook.io"] == "Fail"
    args = "jsonpath={.spec.template.spec.containers[0].args}"
    assert "--preset=strict" in k("get", "deployment", "waypoint-webhook", "-n", "mesh-policy", "-o", args).stdout
    # Open it before uninstalling: every entry at Ignore, the syntax rules held by the API server.
    helm("upgrade", "waypoint-webhook", *common, "--set", "webhook.failurePolicy=Ignore")
    assert {wh["failurePolicy"] for wh in _vwc(k)["webhooks"]} == {"Ignore"}
    assert len([n for n in webhook_objects(k) if n.startswith("validatingadmissionpolicy.")]) == len(POLICIES)
    assert "InvalidUseWaypoint" in deny_message(k, *label)  # the webhook and the policies agree


def _vwc(k: Kubectl) -> dict[str, Any]:
    return dict(yaml.safe_load(k("get", "validatingwebhookconfiguration", "waypoint-webhook", "-o", "yaml").stdout))


def _secret(k: Kubectl, ns: str) -> dict[str, str]:
    return dict(yaml.safe_load(k("get", "secret", "waypoint-webhook-tls", "-n", ns, "-o", "yaml").stdout)["data"])


def test_generated_certificates_survive_upgrades_and_rotate_on_request(helm: Helm, k: Kubectl) -> None:
    """certificates.mode=generate: a pair for the Service's names, chained to the caBundle the
    webhooks carry; kept by an upgrade (lookup), replaced by one with rotate=true."""
    chart = [str(CHART), "-n", "gen", "--create-namespace"]
    helm("install", "waypoint-webhook", *chart)
    try:
        first = _secret(k, "gen")
        cert = x509.load_pem_x509_certificate(base64.b64decode(first["tls.crt"]))
        ca = x509.load_pem_x509_certificate(base64.b64decode(first["ca.crt"]))
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "waypoint-webhook.gen.svc" in sans.get_values_for_type(x509.DNSName)
        assert {wh["clientConfig"]["caBundle"] for wh in _vwc(k)["webhooks"]} == {first["ca.crt"]}
        helm("upgrade", "waypoint-webhook", *chart[:3], "--set", "replicaCount=2")
        assert _secret(k, "gen") == first
        helm("upgrade", "waypoint-webhook", *chart[:3], "--reuse-values", "--set", "certificates.generate.rotate=true")
        rotated = _secret(k, "gen")
        assert rotated["tls.crt"] != first["tls.crt"]
        assert {wh["clientConfig"]["caBundle"] for wh in _vwc(k)["webhooks"]} == {rotated["ca.crt"]}
    finally:
        helm("uninstall", "waypoint-webhook", "-n", "gen")
    assert webhook_objects(k) == []


def test_monitoring_is_the_tested_rule_file_in_both_installs(helm: Helm, k: Kubectl) -> None:
    """The PrometheusRule of the chart and of manifests/monitoring/ carry exactly the groups that
    promtool tests (tests/e2e/test_alerts.py); both PodMonitors scrape the probe port."""
    groups = yaml.safe_load((ROOT / "manifests" / "monitoring" / "alerts.yaml").read_text())["groups"]
    charted = helm.template(
        "--set", "monitoring.prometheusRule.enabled=true", "--set", "monitoring.podMonitor.enabled=true"
    )
    kustomized = [d for d in yaml.safe_load_all(k("kustomize", str(ROOT / "manifests" / "monitoring")).stdout) if d]
    for docs in (charted, kustomized):
        (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
        assert rule["spec"]["groups"] == groups
        (monitor,) = [d for d in docs if d["kind"] == "PodMonitor"]
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] == "probes" and endpoint["path"] == "/metrics" and endpoint["honorLabels"] is True
    assert not [d for d in helm.template() if d["kind"] in ("PrometheusRule", "PodMonitor")]  # off by default
    dashboard = (ROOT / "manifests" / "monitoring" / "dashboard.json").read_text()
    charted = helm.template("--set", "monitoring.dashboard.enabled=true")
    for docs in (charted, kustomized):
        (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "waypoint-webhook-dashboard"]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1" and cm["data"]["waypoint-webhook.json"] == dashboard


MONITORS = {"PodMonitor": "podMetricsEndpoints", "ServiceMonitor": "endpoints"}


def _kustomized_monitoring(k: Kubectl, tmp_path: Path, *components: str) -> list[dict[str, Any]]:
    """The base manifests with manifests/monitoring and the named components under it, as a
    user's overlay lists them (kustomize takes relative paths only)."""
    overlay = tmp_path / ("overlay-" + "-".join(components or ("plain",)))
    overlay.mkdir()
    rel = Path(os.path.relpath(ROOT / "manifests", overlay))
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [str(rel)],
                "components": [str(rel / "monitoring"), *(str(rel / "monitoring" / c) for c in components)],
            }
        )
    )
    return [d for d in yaml.safe_load_all(k("kustomize", str(overlay)).stdout) if d]


def _scrape_shape(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """What decides how Prometheus scrapes: each monitor's endpoints, and the container's probe
    schemes and --probe-tls."""
    out: dict[str, Any] = {
        kind: d["spec"][field] for d in docs for kind, field in MONITORS.items() if d["kind"] == kind
    }
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    out["probes"] = sorted({c[p]["httpGet"]["scheme"] for p in ("startupProbe", "livenessProbe", "readinessProbe")})
    out["probe-tls"] = "--probe-tls" in c["args"]
    return out


@pytest.mark.parametrize("tls", [False, True], ids=["http", "tls"])
@pytest.mark.parametrize("monitor", ["PodMonitor", "ServiceMonitor"])
def test_the_monitors_scrape_alike_in_both_installs(
    helm: Helm, k: Kubectl, tmp_path: Path, tls: bool, monitor: str
) -> None:
    """monitoring.tls and monitoring.{pod,service}Monitor.enabled in the chart, the tls and
    servicemonitor components in kustomize: the same monitor, endpoints, probes and flag."""
    key = "podMonitor" if monitor == "PodMonitor" else "serviceMonitor"
    charted = helm.template(
        "-n",
        "waypoint-webhook",
        "--set",
        f"monitoring.{key}.enabled=true",
        "--set",
        f"monitoring.tls={str(tls).lower()}",
    )
    components = [*(["servicemonitor"] if monitor == "ServiceMonitor" else []), *(["tls"] if tls else [])]
    kustomized = _kustomized_monitoring(k, tmp_path, *components)
    assert _scrape_shape(charted) == _scrape_shape(kustomized)
    shape = _scrape_shape(charted)
    assert set(shape) == {monitor, "probes", "probe-tls"}, "exactly one monitor"
    (endpoint,) = shape[monitor]
    assert endpoint["scheme"] == ("https" if tls else "http") and shape["probes"] == (["HTTPS"] if tls else ["HTTP"])
    if monitor == "ServiceMonitor":
        for docs in (charted, kustomized):
            (svc,) = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "waypoint-webhook-metrics"]
            (sm,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
            assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
            assert svc["spec"]["ports"] == [
                {"name": "metrics", "port": 8080, "targetPort": "probes", "protocol": "TCP"}
            ]


def _verified_scrape(port: int, ca: Path, server_name: str) -> str:
    """GET /metrics as Prometheus does with the monitor's tlsConfig: connect to the pod's address,
    verify the certificate against ``ca`` for ``server_name``."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=server_name) as s,
    ):
        s.sendall(f"GET /metrics HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def test_the_monitors_are_valid_and_their_tls_verifies_the_shipped_certificate(
    cp: ControlPlane, helm: Helm, k: Kubectl, tmp_path: Path
) -> None:
    """The chart with every monitoring object and monitoring.tls, installed on a kube-apiserver
    with the Prometheus Operator's CRDs (v0.89.0, which validate them); then the probe port served
    with the pair of the Secret the chart generated, scraped with exactly the ServiceMonitor's
    tlsConfig (CA from the Secret key it names, its serverName)."""
    for f in monitoring_crd_files():
        k("apply", "--server-side", "-f", str(f))
    k(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *(f"crd/{n}.monitoring.coreos.com" for n in MONITORING_CRDS),
    )
    values = ["monitoring.tls=true", "monitoring.serviceMonitor.enabled=true", "monitoring.podMonitor.enabled=true",
              "monitoring.prometheusRule.enabled=true"]  # fmt: skip
    helm(
        "install",
        "waypoint-webhook",
        str(CHART),
        "-n",
        "mon",
        "--create-namespace",
        *(a for v in values for a in ("--set", v)),
    )
    try:
        sm = yaml.safe_load(k("get", "servicemonitor", "waypoint-webhook", "-n", "mon", "-o", "yaml").stdout)
        assert yaml.safe_load(k("get", "podmonitor", "waypoint-webhook", "-n", "mon", "-o", "yaml").stdout)
        (endpoint,) = sm["spec"]["endpoints"]
        tls_config = endpoint["tlsConfig"]
        secret = _secret(k, "mon") if tls_config["ca"]["secret"]["name"] == "waypoint-webhook-tls" else {}
        certs = tmp_path / "certs"
        certs.mkdir()
        for name in ("tls.crt", "tls.key"):
            (certs / name).write_bytes(base64.b64decode(secret[name]))
        (tmp_path / "ca.crt").write_bytes(base64.b64decode(secret[tls_config["ca"]["secret"]["key"]]))
        port, probe = free_port(), free_port()
        argv = serve_command(
            port, certs, 1, "--state", str(ROOT / "examples" / "state"), "--probe-tls", probe_port=probe
        )
        log = tmp_path / "serve.log"
        proc = spawn(argv, log.open("wb"))
        try:
            got = wait_until(
                lambda: _try_scrape(probe, tmp_path / "ca.crt", tls_config["serverName"]),
                30,
                f"a verified scrape\n{log.read_text()}",
            )
            assert got.startswith("HTTP/1.0 200") and "waypoint_webhook_" in got, got[:300]
            with pytest.raises(ssl.SSLCertVerificationError):
                _verified_scrape(probe, tmp_path / "ca.crt", "waypoint-webhook.elsewhere.svc")
        finally:
            proc.terminate()
            proc.wait(15)
    finally:
        helm("uninstall", "waypoint-webhook", "-n", "mon")


def _try_scrape(port: int, ca: Path, server_name: str) -> str | None:
    try:
        got = _verified_scrape(port, ca, server_name)
    except (OSError, ssl.SSLError):
        return None
    return got if "waypoint_webhook_" in got else None
