"""Command line: serve, auditor, check, audit, certs, codes and policy.

Exit status for ``check``: 0 all admitted, 1 something denied, 2 unusable input or
configuration (the message names the file and line).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson
import yaml
from flask import Flask

from webhook import logs
from webhook.config import ConfigError, Options, build_settings
from webhook.engine import Engine, Settings
from webhook.findings import CODES, PRESETS, Severity, parse_overrides
from webhook.metrics import Metrics
from webhook.state.files import StateError
from webhook.state.view import ClusterView
from webhook.tls import CertReloader
from webhook.worker import Deadlines

log = logging.getLogger("webhook")


def _policy_flags(p: argparse.ArgumentParser) -> None:
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


def _settings(args: argparse.Namespace) -> tuple[Settings, str]:
    try:
        flags = Options(
            preset=args.preset,
            severities=parse_overrides(args.severity),
            waypoint_classes=args.waypoint_classes,
            excluded_namespaces=args.excluded_namespaces,
            unsynced=Severity.parse(args.unsynced) if args.unsynced else None,
            log_level=args.log_level,
            pin_waypoint_for=args.pin_waypoint_for,
        )
        return build_settings(flags, os.environ, args.config)
    except (ValueError, ConfigError) as e:
        print(f"waypoint-webhook: configuration: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _log_format(args: argparse.Namespace) -> str:
    fmt = getattr(args, "log_format", None) or os.environ.get("WAYPOINT_WEBHOOK_LOG_FORMAT") or "text"
    if fmt not in ("text", "json"):
        print(f"waypoint-webhook: configuration: log format must be text or json, not {fmt!r}", file=sys.stderr)
        raise SystemExit(2)
    return fmt


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be a number of seconds between 0 and 3600")
    return value


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="waypoint-webhook", description=__doc__.splitlines()[0] if __doc__ else "")
    sub = ap.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve the admission webhook over TLS (gunicorn, gthread)")
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
        help="also serve /healthz, /readyz and /metrics on this port over plain HTTP (for probes and "
        "Prometheus when --client-ca makes the main port require client certificates)",
    )
    d = Deadlines()
    for flag, default, what in (
        ("--handshake-timeout", d.handshake, "accept to TLS established"),
        ("--header-timeout", d.header, "first byte of a request to the end of its headers"),
        ("--body-timeout", d.body, "end of the headers to the end of the body"),
        ("--response-timeout", d.response, "a request's turn in a thread, writing the answer included"),
    ):
        s.add_argument(flag, type=_seconds, default=default, metavar="SECONDS", help=f"{what} (default {default:g})")
    s.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="text (default) or JSON lines (also $WAYPOINT_WEBHOOK_LOG_FORMAT)",
    )
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
    s.add_argument(
        "--audit",
        action="store_true",
        help="also run the continuous audit in a process beside the workers (needs --cluster): findings in "
        "/metrics and, while this replica holds the Lease, PolicyReports",
    )
    _policy_flags(s)

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
    au.add_argument(
        "--debounce",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="wait this long after an event for the rest of a burst (default 1)",
    )
    au.add_argument(
        "--full-pass-interval",
        type=_seconds,
        default=600.0,
        metavar="SECONDS",
        help="re-judge everything this often (default 600)",
    )
    au.add_argument("--lease-duration", type=_seconds, default=15.0, metavar="SECONDS")
    au.add_argument("--renew-deadline", type=_seconds, default=10.0, metavar="SECONDS")
    au.add_argument("--lease-retry", type=_seconds, default=2.0, metavar="SECONDS")
    au.add_argument(
        "--report-retry",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="how often to look again for a missing PolicyReport CRD (default 60)",
    )
    au.add_argument("--write-qps", type=float, default=20.0, help="report writes per second at most (default 20)")
    au.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    au.add_argument("--log-format", choices=("text", "json"))
    _policy_flags(au)

    c = sub.add_parser("check", help="judge manifests offline, as CREATEs in order")
    c.add_argument("paths", nargs="*", metavar="PATH", help="manifest files or directories (as a shell expands globs)")
    c.add_argument(
        "-f",
        "--filename",
        action="append",
        default=[],
        dest="files",
        metavar="FILE",
        help="manifest file or directory, or - for stdin (repeatable)",
    )
    c.add_argument("-R", "--recursive", action="store_true", help="also read the subdirectories of directories")
    c.add_argument("--state", help="cluster state from YAML: a file or a directory")
    c.add_argument("-o", "--output", choices=("text", "json", "sarif"), default="text")
    c.add_argument("--only-findings", action="store_true", help="leave out objects without findings")
    _policy_flags(c)

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
    k.add_argument("--namespace", help="install namespace: write the Secret and kustomization for it")
    k.add_argument("--manifests", default="manifests", help="the base manifests (default: manifests)")
    k.add_argument(
        "--fail-open",
        action="store_true",
        help="with --namespace: the validating webhooks fail open, the syntax rules held by ValidatingAdmissionPolicies",
    )

    a = sub.add_parser(
        "audit",
        help="judge every existing object of a cluster (or of --state files) against the current state",
        description="What is already broken: every relevant object judged as it is stored, with the rules and "
        "severities of admission. Exit status 0, or 1 with --fail-on and a finding at that severity, 2 for an "
        "unusable source.",
    )
    src_a = a.add_mutually_exclusive_group()
    src_a.add_argument(
        "--state", action="append", metavar="PATH", help="YAML files or directories instead of a cluster"
    )
    src_a.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, else $KUBECONFIG)")
    a.add_argument("-o", "--output", choices=("text", "json"), default="text")
    a.add_argument("-n", "--namespace", help="only this namespace (and the Namespace object itself)")
    a.add_argument("--code", action="append", default=[], metavar="CODE", help="only these codes (repeatable)")
    a.add_argument("--min-severity", choices=("warn", "deny"), default="warn")
    a.add_argument("--fail-on", choices=("deny", "warn"), help="exit 1 when a finding at this severity is found")
    _policy_flags(a)

    sub.add_parser("codes", help="print the finding codes with their default severities (Markdown)")
    pol = sub.add_parser(
        "policy",
        help="print the ValidatingAdmissionPolicies that enforce the syntax rules inside the API server",
        description="The stateless deny rules as ValidatingAdmissionPolicies and bindings (YAML), as shipped in "
        "manifests/fail-open/policy.yaml.",
    )
    pol.add_argument("--namespace", default="waypoint-webhook", help="the webhook's namespace (excluded)")
    return ap


def cmd_check(args: argparse.Namespace) -> int:
    from webhook.checker import check_files, expand_paths, render_text, sarif

    settings, _ = _settings(args)
    if not args.files and not args.paths:
        print("waypoint-webhook check: name manifests with -f FILE|DIR or as arguments", file=sys.stderr)
        return 2
    try:
        results = check_files(expand_paths([*args.files, *args.paths], args.recursive), args.state, settings)
    except StateError as e:
        print(f"waypoint-webhook check: {e}", file=sys.stderr)
        return 2
    status = 0 if all(r.allowed for r in results) else 1
    shown = [r for r in results if r.findings] if args.only_findings else results
    if args.output == "json":
        sys.stdout.write(orjson.dumps([r.to_json() for r in shown], option=orjson.OPT_INDENT_2).decode() + "\n")
    elif args.output == "sarif":
        sys.stdout.write(orjson.dumps(sarif(results), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render_text(shown))
    return status


def cmd_certs(args: argparse.Namespace) -> int:
    from webhook import install, tls

    out = Path(args.out)
    try:
        if args.namespace:
            issued, reused = install.generate(args.namespace, out, Path(args.manifests), args.days, args.fail_open)
            names = ", ".join(install.dns_names(args.namespace))
            print(f"wrote {out}/: serving certificate for {names} ({'existing CA reused' if reused else 'new CA'}),")
            print(
                "  secret.yaml (0600), webhooks-patch.yaml, kustomization.yaml"
                + (
                    " (fail-open: webhooks at Ignore, syntax rules as ValidatingAdmissionPolicies)"
                    if args.fail_open
                    else ""
                )
            )
            print("install with: kubectl apply -k certs/")
            return 0
        issued = tls.issue(args.dns, args.ip, days=args.days)
        paths = tls.write(issued, out)
    except (ValueError, OSError, yaml.YAMLError) as e:
        print(f"waypoint-webhook certs: {e}", file=sys.stderr)
        return 2
    print(f"# wrote {paths['ca']}, {paths['cert']}, {paths['key']}", file=sys.stderr)
    print(issued.ca_bundle)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from webhook import audit
    from webhook.findings import CODES

    settings, _ = _settings(args)
    unknown = sorted(set(args.code) - set(CODES))
    if unknown:
        print(f"waypoint-webhook audit: unknown codes: {', '.join(unknown)}", file=sys.stderr)
        return 2
    filters = audit.Filters(args.namespace, frozenset(args.code), Severity.parse(args.min_severity))

    def progress(line: str) -> None:
        print(f"# {line}", file=sys.stderr)

    try:
        if args.state:
            source = audit.state_source(args.state)
        else:
            from kubernetes import client

            from webhook.state.live import client_configuration

            source = audit.live_source(client.ApiClient(client_configuration(args.kubeconfig)), progress)
        entries = audit.run(source, settings, filters)
    except (StateError, ValueError, OSError, RuntimeError) as e:
        print(f"waypoint-webhook audit: {e}", file=sys.stderr)
        return 2
    if args.output == "json":
        sys.stdout.write(orjson.dumps([e.to_json() for e in entries], option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(audit.render_text(entries))
    return audit.exit_status(entries, args.fail_on)


def _policy_argv(args: argparse.Namespace) -> list[str]:
    """The policy flags of ``serve`` again, for the auditor it starts (same rules, same severities)."""
    out: list[str] = []
    if args.preset:
        out += ["--preset", args.preset]
    for item in args.severity:
        out += ["--severity", item]
    for cls in args.waypoint_classes or ():
        out += ["--waypoint-class", cls]
    for ns in args.excluded_namespaces or ():
        out += ["--exclude-namespace", ns]
    if args.unsynced:
        out += ["--unsynced", args.unsynced]
    if args.pin_waypoint_for:
        out += ["--pin-waypoint-for"]
    if args.config:
        out += ["--config", args.config]
    if args.log_level:
        out += ["--log-level", args.log_level]
    return out


def cmd_auditor(args: argparse.Namespace) -> int:
    from webhook import auditor

    settings, level = _settings(args)
    logs.setup(level, _log_format(args))
    opts = auditor.AuditorOptions(
        settings=settings,
        kubeconfig=args.kubeconfig,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        identity=args.identity,
        status_file=args.status_file,
        reports=args.reports,
        debounce=args.debounce,
        full_pass_interval=args.full_pass_interval,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        lease_retry=args.lease_retry,
        report_retry=args.report_retry,
        write_qps=args.write_qps,
        exit_with_parent=args.exit_with_parent,
    )
    return auditor.run(opts)


POLICY_HEADER = (
    "# Generated by `waypoint-webhook policy` from the rules that need no cluster state\n"
    "# (webhook/policy.py); tests/unit/test_policy.py keeps this file equal to its output.\n"
)


def cmd_policy(args: argparse.Namespace) -> int:
    from webhook.policy import documents

    sys.stdout.write(POLICY_HEADER + yaml.safe_dump_all(documents(args.namespace), sort_keys=False, width=120))
    return 0


def cmd_codes() -> int:
    print("| code | default | strict | when |")
    print("|---|---|---|---|")
    for code, info in CODES.items():
        strict = "deny" if info.strict_deny else str(info.default)
        print(f"| `{code}` | {info.default} | {strict} | {info.summary} |")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from webhook import serving

    settings, level = _settings(args)
    fmt = _log_format(args)
    logs.setup(level, fmt)
    live = args.cluster or bool(args.kubeconfig)
    if args.audit and not live:
        log.error("waypoint-webhook serve: --audit needs --cluster or --kubeconfig (it audits the live cluster)")
        return 2
    if not live and not args.state:
        log.warning("no --state and no --cluster: serving with an empty cluster view")
    try:
        _preflight(args, live)
    except (StateError, ValueError) as e:
        log.error("waypoint-webhook serve: %s", e)
        return 2
    opts = serving.ServeOptions(
        host=args.host,
        port=args.port,
        workers=args.workers,
        threads=args.threads,
        keepalive=args.keepalive,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.client_ca,
        probe_port=args.probe_port,
        deadlines=Deadlines(args.handshake_timeout, args.header_timeout, args.body_timeout, args.response_timeout),
        log_level=level,
        sidecar=(
            (
                sys.executable,
                "-m",
                "webhook",
                "auditor",
                "--log-format",
                fmt,
                *_policy_argv(args),
                *(["--kubeconfig", args.kubeconfig] if args.kubeconfig else []),
            )
            if args.audit
            else ()
        ),
    )

    def build_app(reloader: CertReloader | None) -> Flask:
        from webhook.server import create_app

        logs.setup(level, fmt)
        metrics = Metrics(serving.audit_status_path(os.environ) if args.audit else None)
        view = _make_view(args, metrics)
        checks = []
        if reloader is not None:

            def cert_check() -> str | None:
                with contextlib.suppress(ssl.SSLError):  # notices a rotation even with no new connection
                    reloader.context()
                metrics.cert_expiry.set(reloader.expiry)
                metrics.cert_rejected.set(1 if reloader.rejected else 0)
                return None if reloader.ready else f"serving certificate: {reloader.error or 'expired'}"

            checks.append(cert_check)
        checks.append(lambda: None if view.synced() else "cluster view not synced yet")
        return create_app(Engine(view, settings), metrics, checks, args.probe_port)

    try:
        serving.run(opts, build_app)
    except serving.StartupError as e:
        log.error("waypoint-webhook serve: %s", e)
        return 2
    return 0


def _preflight(args: argparse.Namespace, live: bool) -> None:
    """Check in the master what every worker would need, so a misconfiguration is one log line
    and exit status 2, not workers failing to boot one after another."""
    if args.state:  # the file and line of a broken state file
        from webhook.state.files import FileView

        FileView(args.state)
    if live:
        from webhook.state.live import client_configuration

        client_configuration(args.kubeconfig)


def _make_view(args: argparse.Namespace, metrics: Metrics) -> ClusterView:
    """Per worker: the live watch-backed view, or the file view (polled for changes)."""
    if args.cluster or args.kubeconfig:
        from webhook.state.index import settle_heap
        from webhook.state.live import LiveView

        live = LiveView.from_kubeconfig(args.kubeconfig, metrics)
        live.start()
        if live.wait_synced(args.sync_timeout):
            settle_heap()  # the synced view is long-lived: keep it out of full collections
        else:
            log.warning(
                "cluster view not synced after %.0fs; serving with StateUnavailable until it is", args.sync_timeout
            )
        return live
    from webhook.state.files import FileView

    view = FileView(args.state)  # settles the heap after every load
    if args.state:
        view.start(args.state_poll_interval)
    return view


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "check":
        return cmd_check(args)
    if args.command == "certs":
        return cmd_certs(args)
    if args.command == "codes":
        return cmd_codes()
    if args.command == "policy":
        return cmd_policy(args)
    if args.command == "audit":
        return cmd_audit(args)
    if args.command == "auditor":
        return cmd_auditor(args)
    return cmd_serve(args)


if __name__ == "__main__":
    raise SystemExit(main())
