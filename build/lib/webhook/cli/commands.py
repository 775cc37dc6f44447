"""Command line: serve, auditor, check, audit, certs, codes and policy.

Each command turns its flags into the shapes the packages take, calls them, and turns the
outcome into output and an exit status. Exit status for ``check``: 0 all admitted, 1 something
denied, 2 unusable input or configuration (the message names the file and line).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
import yaml

from webhook.admission import logs
from webhook.admission.serving import ServeOptions
from webhook.admission.worker import Deadlines
from webhook.cli.config import ConfigError, Options, build_settings
from webhook.cli.generate import POLICY_HEADER, code_table, policy_file
from webhook.cli.parser import parser
from webhook.cluster.files import StateError
from webhook.core.engine import Settings
from webhook.core.findings import CODES, Severity, parse_overrides

log = logging.getLogger("webhook")

__all__ = ["COMMANDS", "POLICY_HEADER", "main"]


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


def _json_out(payload: object) -> None:
    sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")


def cmd_check(args: argparse.Namespace) -> int:
    from webhook.cli.check import check_files, expand_paths, render_text, sarif

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
        _json_out([r.to_json() for r in shown])
    elif args.output == "sarif":
        _json_out(sarif(results))
    else:
        print(render_text(shown))
    return status


def _install(args: argparse.Namespace, out: Path) -> None:
    from webhook.cli import install

    _, reused = install.generate(args.namespace, out, Path(args.manifests), args.days, fail_open=args.fail_open)
    names = ", ".join(install.dns_names(args.namespace))
    print(f"wrote {out}/: serving certificate for {names} ({'existing CA reused' if reused else 'new CA'}),")
    fail_open = " (fail-open: webhooks at Ignore, syntax rules as ValidatingAdmissionPolicies)"
    print("  secret.yaml (0600), webhooks-patch.yaml, kustomization.yaml" + (fail_open if args.fail_open else ""))
    print("install with: kubectl apply -k certs/")


def cmd_certs(args: argparse.Namespace) -> int:
    from webhook.admission import tls

    out = Path(args.out)
    try:
        if args.namespace:
            _install(args, out)
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
    from webhook.audit import oneoff
    from webhook.cluster import sources

    settings, _ = _settings(args)
    unknown = sorted(set(args.code) - set(CODES))
    if unknown:
        print(f"waypoint-webhook audit: unknown codes: {', '.join(unknown)}", file=sys.stderr)
        return 2
    filters = oneoff.Filters(args.namespace, frozenset(args.code), Severity.parse(args.min_severity))
    try:
        if args.state:
            source = sources.state_source(args.state)
        else:
            from kubernetes import client

            from webhook.kube.config import client_configuration

            api = client.ApiClient(client_configuration(args.kubeconfig))
            source = sources.live_source(api, lambda line: print(f"# {line}", file=sys.stderr))
        entries = oneoff.run(source, settings, filters)
    except (StateError, ValueError, OSError, RuntimeError) as e:
        print(f"waypoint-webhook audit: {e}", file=sys.stderr)
        return 2
    if args.output == "json":
        _json_out([e.to_json() for e in entries])
    else:
        print(oneoff.render_text(entries))
    return oneoff.exit_status(entries, args.fail_on)


def _policy_argv(args: argparse.Namespace) -> list[str]:
    """The policy flags of ``serve`` again, for the auditor it starts (same rules, same severities)."""
    out: list[str] = []
    for flag, value in (("--preset", args.preset), ("--unsynced", args.unsynced), ("--config", args.config)):
        if value:
            out += [flag, value]
    for flag, values in (
        ("--severity", args.severity),
        ("--waypoint-class", args.waypoint_classes),
        ("--exclude-namespace", args.excluded_namespaces),
    ):
        for value in values or ():
            out += [flag, value]
    if args.pin_waypoint_for:
        out += ["--pin-waypoint-for"]
    if args.log_level:
        out += ["--log-level", args.log_level]
    return out


def cmd_auditor(args: argparse.Namespace) -> int:
    from webhook.audit import auditor
    from webhook.cli import assembly

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
    try:
        built = assembly.auditor(opts)
    except ValueError as e:
        log.error("waypoint-webhook auditor: %s", e)
        return 2
    return auditor.run(built)


def cmd_policy(args: argparse.Namespace) -> int:
    sys.stdout.write(policy_file(args.namespace))
    return 0


def cmd_codes(args: argparse.Namespace) -> int:
    print(code_table())
    return 0


def _serve_options(args: argparse.Namespace, level: str, fmt: str) -> ServeOptions:
    sidecar = (sys.executable, "-m", "webhook", "auditor", "--log-format", fmt, *_policy_argv(args))
    if args.kubeconfig:
        sidecar += ("--kubeconfig", args.kubeconfig)
    return ServeOptions(
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
        sidecar=sidecar if args.audit else (),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from webhook.cli import assembly

    settings, level = _settings(args)
    fmt = _log_format(args)
    logs.setup(level, fmt)
    wiring = assembly.Wiring(
        settings=settings,
        log_level=level,
        log_format=fmt,
        state=args.state,
        kubeconfig=args.kubeconfig,
        live=args.cluster or bool(args.kubeconfig),
        audit=args.audit,
        probe_port=args.probe_port,
        state_poll_interval=args.state_poll_interval,
        sync_timeout=args.sync_timeout,
    )
    return assembly.serve(_serve_options(args, level, fmt), wiring)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "auditor": cmd_auditor,
    "check": cmd_check,
    "audit": cmd_audit,
    "certs": cmd_certs,
    "codes": cmd_codes,
    "policy": cmd_policy,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
