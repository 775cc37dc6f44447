"""The command line's flags: one function per subcommand, so each reads as its own usage."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from webhook.admission.worker import Deadlines
from webhook.audit.reports import CHOICES as REPORT_APIS
from webhook.core.findings import PRESETS
from webhook.core.model import is_dns1123_label

DESCRIPTION = "waypoint-webhook: admission webhook for Istio ambient-mode waypoint configuration"


class _SubParser(argparse.ArgumentParser):
    """Subcommands never accept abbreviated flags, whatever their own definition says."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[_SubParser]


def seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be a number of seconds between 0 and 3600")
    return value


def policy_flags(p: argparse.ArgumentParser) -> None:
    """The flags that choose the rules' severities, shared by every command that judges."""
    p.add_argument("--preset", choices=PRESETS, help="severity preset (default: default)")
    p.add_argument(
        "--severity",
        action="append",
        default=[],
        metavar="CODE=deny|warn|off",
        help="override one finding's severity; repeatable, or comma-separated",
    )
    p.add_argument(
        "--waypoint-class",
        action="append",
        dest="waypoint_classes",
        metavar="CLASS",
        help="a GatewayClass that is a waypoint class (repeatable; default istio-waypoint)",
    )
    p.add_argument(
        "--exclude-namespace",
        action="append",
        dest="excluded_namespaces",
        metavar="NS",
        help="namespace whose objects are never judged (repeatable; default kube-system, "
        "kube-node-lease and $POD_NAMESPACE)",
    )
    p.add_argument(
        "--unsynced",
        choices=("deny", "warn", "off"),
        help="severity of StateUnavailable while the cluster view is not synced (default warn)",
    )
    p.add_argument(
        "--pin-waypoint-for",
        action="store_const",
        const=True,
        help="M2: label new waypoint Gateways with their effective waypoint-for (off by default: istiod "
        "reads a missing label from the GatewayClass at run time)",
    )
    p.add_argument("--config", help="YAML config file (also $WAYPOINT_WEBHOOK_CONFIG)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))


def configmap(text: str) -> tuple[str, str] | None:
    if text in ("", "none"):
        return None
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name:
        raise argparse.ArgumentTypeError("must be NAMESPACE/NAME, or none")
    return namespace, name


def mesh_configmap_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mesh-configmap",
        type=configmap,
        default=("istio-system", "istio"),
        metavar="NAMESPACE/NAME",
        help="the ConfigMap holding istiod's MeshConfig, watched for ServiceEntry visibility (V1; default "
        "istio-system/istio, istio-system/istio-<revision> for a revision, none to skip); reading it needs "
        "the Role of manifests/mesh-config/",
    )


def report_api_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--report-api",
        choices=tuple(REPORT_APIS),
        default="auto",
        help="the API group the continuous audit writes its reports to: auto (default) uses whichever of "
        "wgpolicyk8s.io (PolicyReport) and openreports.io (Report) is installed, wgpolicyk8s.io when both are; "
        "naming a group writes only there. Our reports in the other group are deleted",
    )


def mesh_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mesh-config",
        metavar="FILE",
        help="istiod's MeshConfig (its file, or the ConfigMap istio holding it): ServiceEntry visibility (V1); "
        "a ConfigMap istio-system/istio among the inputs serves too. Without either, V1 is not checked",
    )


def _serve_transport(s: argparse.ArgumentParser) -> None:
    s.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    s.add_argument("--port", type=int, default=8443)
    s.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    s.add_argument("--threads", type=int, default=4, help="threads per worker (default 4)")
    s.add_argument("--keepalive", type=int, default=120, help="idle keep-alive seconds (default 120)")
    s.add_argument("--tls-cert", help="PEM certificate chain (reloaded when it changes)")
    s.add_argument("--tls-key", help="PEM private key")
    s.add_argument(
        "--client-ca",
        help="PEM CA bundle: require client certificates signed by it (reloaded with the pair)",
    )
    s.add_argument(
        "--probe-port",
        type=int,
        default=8080,
        help="serve /healthz, /readyz and /metrics on this port over plain HTTP, from a process no "
        "admission request waits for (default 8080; 0: none, and no /metrics)",
    )
    s.add_argument(
        "--probe-tls",
        action="store_true",
        help="serve the probe port over TLS with the serving certificate (--tls-cert/--tls-key, reloaded "
        "with them): probes then use scheme HTTPS, and Prometheus verifies with the CA of the Secret",
    )
    s.add_argument(
        "--metrics-cache",
        type=float,
        default=1.0,
        help="seconds one rendering of /metrics is served again, whatever the number of scrapers (default 1)",
    )
    d = Deadlines()
    for flag, default, what in (
        ("--handshake-timeout", d.handshake, "accept to TLS established"),
        ("--header-timeout", d.header, "first byte of a request to the end of its headers"),
        ("--body-timeout", d.body, "end of the headers to the end of the body"),
        ("--response-timeout", d.response, "a request's turn in a thread, writing the answer included"),
    ):
        s.add_argument(flag, type=seconds, default=default, metavar="SECONDS", help=f"{what} (default {default:g})")
    s.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="text (default) or JSON lines (also $WAYPOINT_WEBHOOK_LOG_FORMAT)",
    )


def _serve_state(s: argparse.ArgumentParser) -> None:
    src = s.add_mutually_exclusive_group()
    src.add_argument("--state", help="cluster state from YAML: a file or a directory (reloaded on change)")
    src.add_argument(
        "--cluster", action="store_true", help="follow the live cluster with watches (kubeconfig or in-cluster config)"
    )
    s.add_argument(
        "--state-poll-interval",
        type=float,
        default=1.0,
        help="seconds between checks of --state files for changes (default 1)",
    )
    s.add_argument("--kubeconfig", help="kubeconfig to use (implies --cluster)")
    s.add_argument(
        "--sync-timeout",
        type=float,
        default=20.0,
        help="seconds a worker waits for its view to sync before it serves (default 20)",
    )
    mesh_configmap_flag(s)
    s.add_argument(
        "--audit",
        action="store_true",
        help="also run the continuous audit in a process beside the workers (needs --cluster): findings in "
        "/metrics and, while this replica holds the Lease, PolicyReports",
    )
    report_api_flag(s)


def _serve(sub: Sub) -> None:
    s = sub.add_parser("serve", help="serve the admission webhook over TLS (gunicorn, gthread)")
    _serve_transport(s)
    _serve_state(s)
    policy_flags(s)


def _auditor_timing(au: argparse.ArgumentParser) -> None:
    au.add_argument(
        "--debounce",
        type=seconds,
        default=1.0,
        metavar="SECONDS",
        help="wait this long after an event for the rest of a burst (default 1)",
    )
    au.add_argument(
        "--full-pass-interval",
        type=seconds,
        default=600.0,
        metavar="SECONDS",
        help="re-judge everything this often (default 600)",
    )
    au.add_argument("--lease-duration", type=seconds, default=15.0, metavar="SECONDS")
    au.add_argument("--renew-deadline", type=seconds, default=10.0, metavar="SECONDS")
    au.add_argument("--lease-retry", type=seconds, default=2.0, metavar="SECONDS")
    au.add_argument(
        "--report-retry",
        type=seconds,
        default=60.0,
        metavar="SECONDS",
        help="how often to look again for a missing PolicyReport CRD (default 60)",
    )
    au.add_argument("--write-qps", type=float, default=20.0, help="report writes per second at most (default 20)")


def _auditor(sub: Sub) -> None:
    au = sub.add_parser(
        "auditor",
        help="run the continuous audit alone (what serve --audit runs beside the workers)",
        description="Watch the cluster, keep every relevant object's findings current, and write them as "
        "PolicyReports while holding the Lease. Stops on SIGTERM, releasing the Lease.",
    )
    au.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, else $KUBECONFIG)")
    au.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE") or "waypoint-webhook",
        help="namespace of the Lease (default $POD_NAMESPACE, else waypoint-webhook)",
    )
    au.add_argument("--lease-name", default="waypoint-webhook-audit")
    au.add_argument("--identity", default="", help="holder identity (default hostname_pid)")
    au.add_argument("--status-file", help="where to publish results for /metrics")
    au.add_argument("--no-reports", dest="reports", action="store_false", help="audit, but never write reports")
    report_api_flag(au)
    mesh_configmap_flag(au)
    _auditor_timing(au)
    au.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    au.add_argument("--log-format", choices=("text", "json"))
    policy_flags(au)


FORMATS = ("text", "json", "sarif", "junit", "github")


def _ci_flags(p: argparse.ArgumentParser) -> None:
    """What ``check`` and ``audit`` share as CI gates: formats, the threshold, suppressions."""
    p.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default="text",
        help="text, json, sarif (code scanning), junit (test reports) or github (workflow annotations)",
    )
    p.add_argument(
        "--fail-on",
        choices=("deny", "warn"),
        default="deny",
        help="exit 1 when a finding at this severity or above is found (default deny)",
    )
    p.add_argument(
        "--suppress",
        action="append",
        default=[],
        metavar="CODE=KIND/NAMESPACE/NAME",
        help="set a finding aside (globs in every part; KIND/NAME for cluster-scoped objects); repeatable",
    )


def _check(sub: Sub) -> None:
    c = sub.add_parser(
        "check",
        help="judge manifests offline, as the cluster will hold them after kubectl apply",
        description="Judge manifest files and directories (read recursively) as the cluster will hold them after "
        "`kubectl apply`: all inputs form the cluster view, then each object is judged against it. Exit status: "
        "0 nothing at --fail-on, 1 a finding at --fail-on, 2 an input or usage error (or nothing to check), "
        "3 the cluster (--kubeconfig) could not be read.",
        allow_abbrev=False,
    )
    c.add_argument("paths", nargs="*", metavar="PATH", help="manifest files or directories, or - for stdin")
    c.add_argument(
        "-f",
        "--filename",
        action="append",
        default=[],
        dest="files",
        metavar="FILE",
        help="manifest file or directory, or - for stdin (repeatable)",
    )
    c.add_argument("--no-recursive", dest="recursive", action="store_false", help="read directories one level deep")
    c.add_argument("-R", "--recursive", action="store_true", default=True, help=argparse.SUPPRESS)
    src = c.add_mutually_exclusive_group()
    src.add_argument("--state", help="what the cluster already holds, from YAML: a file or a directory")
    src.add_argument("--kubeconfig", help="judge against the live cluster (this kubeconfig) merged with the files")
    src.add_argument(
        "--cluster",
        action="store_true",
        help="judge against the live cluster merged with the files, with the in-cluster configuration (a CI "
        "runner's ServiceAccount), else $KUBECONFIG",
    )
    c.add_argument("--only-findings", action="store_true", help="leave out objects without findings")
    c.add_argument(
        "--as-written",
        action="store_true",
        help="judge the inputs' waypoints by their status as written (default: taken as ready, as istiod will make them)",
    )
    c.add_argument(
        "--admission",
        action="store_true",
        help="simulate admission exactly: objects it would not review (excluded namespaces, no waypoint label) "
        "are skipped with the reason",
    )
    c.add_argument("--allow-empty", action="store_true", help="exit 0 when the inputs hold no Kubernetes object")
    mesh_flag(c)
    _ci_flags(c)
    policy_flags(c)


def namespace_name(text: str) -> str:
    """A namespace Kubernetes can create: refused here, before a certificate is written for a
    Service name that cannot exist (``make certs NAMESPACE=Bad_NS``)."""
    if not is_dns1123_label(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a namespace name (lowercase letters, digits and '-', at most 63, "
            "starting and ending with a letter or digit)"
        )
    return text


def _certs(sub: Sub) -> None:
    k = sub.add_parser(
        "certs",
        help="write a CA and a serving certificate; with --namespace, the whole kustomize install",
        description="Without --namespace: a CA and a serving certificate for the given names, and the "
        "caBundle on stdout. With --namespace: the certificate for the in-cluster Service, its Secret, "
        "and a kustomization that installs --manifests into that namespace (make certs). An existing "
        "CA in --out is reused, so the caBundle survives rotation.",
    )
    k.add_argument("--out", required=True, help="directory for ca.crt, tls.crt, tls.key (and the install)")
    k.add_argument("--dns", action="append", default=[], help="DNS SAN (repeatable)")
    k.add_argument("--ip", action="append", default=[], help="IP SAN (repeatable)")
    k.add_argument("--days", type=int, default=365)
    k.add_argument(
        "--namespace",
        type=namespace_name,
        help="install namespace: write the Secret and kustomization for it (a DNS-1123 label)",
    )
    k.add_argument("--manifests", default="manifests", help="the base manifests (default: manifests)")
    k.add_argument(
        "--existing-namespace",
        action="store_true",
        help="with --namespace: the namespace exists and holds other things (never created, labelled or excluded; "
        "always so for istio-system, default, kube-system)",
    )
    k.add_argument(
        "--fail-open",
        action="store_true",
        help="with --namespace: the validating webhooks fail open, the syntax rules held by ValidatingAdmissionPolicies",
    )


def _audit(sub: Sub) -> None:
    a = sub.add_parser(
        "audit",
        help="judge every existing object of a cluster (or of --state files) against the current state",
        description="What is already broken: every relevant object judged as it is stored, with the rules and "
        "severities of admission. Exit status: 0 nothing at --fail-on, 1 a finding at --fail-on (default deny), "
        "2 an unusable input or usage, 3 the cluster could not be read.",
        allow_abbrev=False,
    )
    src_a = a.add_mutually_exclusive_group()
    src_a.add_argument(
        "--state", action="append", metavar="PATH", help="YAML files or directories instead of a cluster"
    )
    src_a.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, else $KUBECONFIG)")
    a.add_argument("-n", "--namespace", help="only this namespace (and the Namespace object itself)")
    a.add_argument("--kind", action="append", default=[], metavar="KIND", help="only these kinds (repeatable)")
    a.add_argument("--code", action="append", default=[], metavar="CODE", help="only these codes (repeatable)")
    a.add_argument("--min-severity", choices=("warn", "deny"), default="warn")
    mesh_flag(a)
    _ci_flags(a)
    policy_flags(a)


def _explain(sub: Sub) -> None:
    e = sub.add_parser(
        "explain",
        help="walk one object's waypoint resolution as istiod does, one rule per line",
        description="Why does this object (not) use a waypoint? The resolution step by step with its rule IDs "
        "(docs/rules.md), the waypoint the data plane will use or why none, and the findings. Reads the live "
        "cluster (--kubeconfig, or in-cluster/$KUBECONFIG) or --state files. Exit status 0, 2 when the object "
        "is not found, 3 when the cluster cannot be read.",
    )
    e.add_argument("target", metavar="KIND/NAME", help="e.g. service/reviews, svc/reviews, ns/default, pod/p")
    e.add_argument("-n", "--namespace", default="default", help="the object's namespace (default: default)")
    src = e.add_mutually_exclusive_group()
    src.add_argument("--state", action="append", metavar="PATH", help="YAML files or directories instead of a cluster")
    src.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, else $KUBECONFIG)")
    e.add_argument("-o", "--output", choices=("text", "json"), default="text")
    mesh_flag(e)
    policy_flags(e)


def _generated(sub: Sub) -> None:
    sub.add_parser("codes", help="print the finding codes with their default severities (Markdown)")
    pol = sub.add_parser(
        "policy",
        help="print the ValidatingAdmissionPolicies that enforce the syntax rules inside the API server",
        description="The stateless deny rules as ValidatingAdmissionPolicies and bindings (YAML), as shipped in "
        "manifests/fail-open/policy.yaml.",
    )
    pol.add_argument(
        "--namespace", default="waypoint-webhook", help="the webhook's namespace (excluded unless a shared one)"
    )


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="waypoint-webhook", description=DESCRIPTION, allow_abbrev=False)
    ap.add_argument("--version", action="store_true", help="print the version and the source revision, and exit")
    sub = ap.add_subparsers(dest="command", required=False, parser_class=_SubParser)
    for add in (_serve, _auditor, _check, _certs, _audit, _explain, _generated):
        add(sub)
    return ap


def subparsers(ap: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's own parser, for errors in its own usage."""
    for action in ap._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}
