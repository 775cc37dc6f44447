"""Command line: serve, auditor, check, audit, certs, codes and policy.

Each command turns its flags into the shapes the packages take, calls them, and turns the
outcome into output and an exit status. Exit status for ``check``: 0 all admitted, 1 something
denied, 2 unusable input or configuration (the message names the file and line).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import yaml

from webhook.admission import logs
from webhook.cli import formats, suppress, version
from webhook.cli.config import ConfigError, Options, build_settings
from webhook.cli.generate import POLICY_HEADER, code_table, policy_file
from webhook.cli.parser import parser, subparsers
from webhook.cli.report import Report, render_text, summary_line
from webhook.cluster.files import StateError
from webhook.cluster.inputs import InputError
from webhook.core.engine import Settings
from webhook.core.findings import CODES, Judged, Severity, parse_overrides
from webhook.core.index import Index
from webhook.core.model import Malformed, MeshConfig
from webhook.core.result import ObjectRef, Result

if TYPE_CHECKING:
    from webhook.admission.serving import ServeOptions

log = logging.getLogger("webhook")

__all__ = ["COMMANDS", "POLICY_HEADER", "main"]


def _settings(args: argparse.Namespace, server: bool = True) -> tuple[Settings, str]:
    """Flags, then (for the server and its auditor only) the environment, then the config file.
    ``check`` and ``audit`` read no environment: POD_NAMESPACE and the server's variables in a CI
    runner's pod never change what they judge."""
    env = os.environ if server else {}
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
        return build_settings(flags, env, args.config)
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


def _emit(report: Report, fmt: str, locate: formats.Locator = lambda r, j: None) -> None:
    """The requested document, whole, whatever the exit status."""
    cwd = Path.cwd()
    if fmt == "json":
        _json_out(report.to_json())
    elif fmt == "sarif":
        _json_out(formats.sarif(report, locate, version.version(), _help_texts(), cwd))
    elif fmt == "junit":
        sys.stdout.buffer.write(formats.junit(report, cwd))
    elif fmt == "github":
        print(formats.github(report, locate, cwd))
        print(summary_line(report), file=sys.stderr)
    elif report.command == "audit":
        print(_render_audit(report))
    else:
        print(render_text(report))


def _render_audit(report: Report) -> str:
    from webhook.audit import oneoff

    lines = [oneoff.render_text(report.results)]
    lines += [f"note: {n}" for n in report.notices]
    lines += [f"error: {e.source}: {e.message}" for e in report.errors]
    if report.cluster_error:
        lines.append(f"error: {report.cluster_error}")
    return "\n".join(lines)


def _help_texts() -> dict[str, str]:
    text = resources.files("webhook.cli").joinpath("rules-help.json").read_text(encoding="utf-8")
    data: dict[str, str] = json.loads(text)
    return data


def _ci_report(args: argparse.Namespace, command: str) -> Report:
    """The report's frame from the CI flags; a bad ``--suppress`` is a usage error (exit 2)."""
    try:
        rules = suppress.parse_all(args.suppress)
    except ValueError as e:
        print(f"waypoint-webhook {command}: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return Report(command, suppressions=rules, fail_on=Severity.parse(args.fail_on))


def _live_api(kubeconfig: str | None) -> Any:
    from kubernetes import client

    from webhook.kube.config import client_configuration

    return client.ApiClient(client_configuration(kubeconfig))


def _check_state(args: argparse.Namespace, report: Report) -> Index:
    """What the cluster holds: ``--state`` files, or the live cluster with ``--kubeconfig``."""
    from webhook.cluster import sources
    from webhook.cluster.files import load_index

    index = Index()
    try:
        if args.state:
            load_index(Path(args.state), index)
        elif args.kubeconfig or args.cluster:
            live = sources.LiveSource(_live_api(args.kubeconfig))
            for obj, _ in live():
                with contextlib.suppress(Malformed):
                    index.apply(obj)
            report.notices += live.notices
    except StateError as e:
        where, _, message = str(e).partition(": ")
        report.errors.append(InputError(where, message))
    except (sources.ClusterUnreadable, ValueError) as e:
        report.cluster_error = str(e)
    return index


def _mesh_flag(args: argparse.Namespace, report: Report) -> MeshConfig | None:
    from webhook.cluster.files import read_mesh_config

    if not args.mesh_config:
        return None
    try:
        return read_mesh_config(Path(args.mesh_config))
    except StateError as e:
        report.errors.append(InputError(args.mesh_config, str(e).partition(": ")[2] or str(e)))
        return None


def _v1_notice(report: Report, mesh: MeshConfig | None) -> None:
    """V1 cannot run without the MeshConfig: say so once, never guess."""
    if mesh is None and any(r.ref.kind == "ServiceEntry" for r in report.results):
        report.notices.append(
            "ServiceEntry visibility (V1) not checked: no MeshConfig (--mesh-config, or ConfigMap istio-system/istio)"
        )


def cmd_check(args: argparse.Namespace) -> int:
    from webhook.cli.check import CheckOptions, check_documents
    from webhook.cluster.inputs import collect

    settings, _ = _settings(args, server=False)
    if not args.files and not args.paths:
        print("waypoint-webhook check: name manifests with -f FILE|DIR or as arguments", file=sys.stderr)
        return 2
    report = _ci_report(args, "check")
    report.allow_empty, report.only_findings = args.allow_empty, args.only_findings
    inputs = collect([*args.files, *args.paths], args.recursive)
    report.skipped, report.errors, report.files = inputs.skipped, inputs.errors, inputs.files
    state = _check_state(args, report)
    state.mesh = _mesh_flag(args, report) or state.mesh
    opts = CheckOptions(as_written=args.as_written, admission=args.admission, suppressions=report.suppressions)
    judged = check_documents(inputs.documents, state, settings, opts)
    report.results, report.not_judged = judged.results, judged.not_judged
    _v1_notice(report, state.mesh)
    report.skipped += judged.skipped
    by_source = {d.source: d for d in inputs.documents}

    def locate(r: Result, j: Judged | None) -> tuple[int, int] | None:
        doc = by_source.get(r.source)
        return doc.position(j.field if j else "") if doc else None

    _emit(report, args.output, locate)
    return report.exit_code()


def _install(args: argparse.Namespace, out: Path) -> None:
    from webhook.cli import install

    existing = args.existing_namespace
    _, reused = install.generate(
        args.namespace, out, Path(args.manifests), args.days, fail_open=args.fail_open, existing=existing
    )
    names = ", ".join(install.dns_names(args.namespace))
    print(f"wrote {out}/: serving certificate for {names} ({'existing CA reused' if reused else 'new CA'}),")
    if install.dedicated(args.namespace, existing=existing):
        print(f"  namespace.yaml: {args.namespace} is the webhook's own (created, and excluded from admission)")
    else:
        print(f"  {args.namespace} exists: not created, not labelled, not excluded (its waypoints are judged)")
    fail_open = " (fail-open: webhooks at Ignore, syntax rules as ValidatingAdmissionPolicies)"
    print(
        "  secret.yaml (0600), patches/, server-patch.yaml, kustomization.yaml" + (fail_open if args.fail_open else "")
    )
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


def _state_mesh(source: object) -> MeshConfig | None:
    """The MeshConfig a ``--state`` source found among its files (a live read lists no ConfigMaps)."""
    from webhook.cluster import sources

    return source.mesh if isinstance(source, sources.StateSource) else None


def _progress(line: str) -> None:
    """What a live read has listed so far, on stderr: beside any document on stdout."""
    print(f"# {line}", file=sys.stderr)


def cmd_audit(args: argparse.Namespace) -> int:
    from webhook.audit import oneoff
    from webhook.cluster import sources

    settings, _ = _settings(args, server=False)
    unknown = sorted(set(args.code) - set(CODES))
    if unknown:
        print(f"waypoint-webhook audit: unknown codes: {', '.join(unknown)}", file=sys.stderr)
        return 2
    report = _ci_report(args, "audit")
    kinds = frozenset(args.kind)
    filters = oneoff.Filters(args.namespace, frozenset(args.code), Severity.parse(args.min_severity), kinds)
    try:
        if args.state:
            source: sources.StateSource | sources.LiveSource = sources.state_source(args.state)
        else:
            source = sources.LiveSource(_live_api(args.kubeconfig), _progress, args.namespace, kinds)
        flag = _mesh_flag(args, report)
        found = oneoff.audit(source, settings, filters, lambda: flag or _state_mesh(source))
        report.results = [suppress.apply(r, report.suppressions) for r in found.results]
        if isinstance(source, sources.StateSource):
            report.errors += source.inputs.errors
            report.skipped += source.inputs.skipped
        else:
            report.notices += source.notices
        _v1_notice(report, flag or _state_mesh(source))
    except (StateError, OSError) as e:
        report.errors.append(InputError(*(str(e).partition(": ")[::2])))
    except (sources.ClusterUnreadable, ValueError) as e:
        report.cluster_error = str(e)
    if report.cluster_error or report.errors:
        print(f"waypoint-webhook audit: {report.cluster_error or report.errors[0].message}", file=sys.stderr)
    _emit(report, args.output)
    return report.exit_code()


SHORT_NAMES = {"svc": "Service", "po": "Pod", "ns": "Namespace", "gw": "Gateway", "gc": "GatewayClass"}
SHORT_NAMES |= {"se": "ServiceEntry", "we": "WorkloadEntry", "deploy": "Deployment", "sts": "StatefulSet"}
SHORT_NAMES |= {"ds": "DaemonSet", "rs": "ReplicaSet", "cj": "CronJob"}


def kind_of(text: str) -> str | None:
    """``service``, ``services``, ``svc`` or ``Service`` -> ``Service``, as kubectl reads them."""
    from webhook.core.kinds import KINDS

    lower = text.lower()
    for k in KINDS:
        if lower in (k.kind.lower(), k.resource, k.resource.rstrip("s")):
            return k.kind
    return SHORT_NAMES.get(lower)


def cmd_explain(args: argparse.Namespace) -> int:
    from webhook.cluster import sources
    from webhook.core.engine import Engine
    from webhook.core.explain import explain
    from webhook.core.index import IndexView
    from webhook.core.kinds import CLUSTER_SCOPED

    settings, _ = _settings(args, server=False)
    kind_text, _, name = args.target.partition("/")
    kind = kind_of(kind_text)
    if kind is None or not name:
        print(
            f"waypoint-webhook explain: {args.target!r}: name an object as KIND/NAME (service/reviews)", file=sys.stderr
        )
        return 2
    namespace = "" if kind in CLUSTER_SCOPED else args.namespace
    index, target = Index(), None
    try:
        source: sources.StateSource | sources.LiveSource = (
            sources.state_source(args.state) if args.state else sources.LiveSource(_live_api(args.kubeconfig))
        )
        for obj, _where in source():
            with contextlib.suppress(Malformed):
                index.apply(obj)
            ref = ObjectRef.of(obj)
            if (ref.kind, ref.namespace, ref.name) == (kind, namespace, name):
                target = obj
    except StateError as e:
        print(f"waypoint-webhook explain: {e}", file=sys.stderr)
        return 2
    except (sources.ClusterUnreadable, ValueError) as e:
        print(f"waypoint-webhook explain: {e}", file=sys.stderr)
        return 3
    problems = source.inputs.errors if isinstance(source, sources.StateSource) else []
    for problem in problems:
        print(f"waypoint-webhook explain: {problem.source}: {problem.message}", file=sys.stderr)
    if target is None:
        where = f" in namespace {namespace}" if namespace else ""
        print(f"waypoint-webhook explain: {kind} {name} not found{where}", file=sys.stderr)
        return 2
    mesh_report = Report("explain")
    index.mesh = _mesh_flag(args, mesh_report) or _state_mesh(source)
    problems = [*problems, *mesh_report.errors]
    result = explain(target, Engine(IndexView(index), replace(settings, excluded_namespaces=frozenset())))
    if args.output == "json":
        _json_out(result.to_json())
    else:
        print("\n".join(result.lines()))
    return 2 if problems else 0


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
        report_api=args.report_api,
        write_qps=args.write_qps,
        exit_with_parent=args.exit_with_parent,
        mesh_configmap=args.mesh_configmap,
    )
    try:
        built = assembly.auditor(opts)
    except ValueError as e:
        log.error("waypoint-webhook auditor: %s", e)
        return 2
    return auditor.run(built)


def cmd_policy(args: argparse.Namespace) -> int:
    from webhook.cli.install import exclusions

    sys.stdout.write(policy_file(exclusions(args.namespace)))
    return 0


def cmd_codes(args: argparse.Namespace) -> int:
    print(code_table())
    return 0


def _serve_options(args: argparse.Namespace, level: str, fmt: str) -> ServeOptions:
    from webhook.admission.serving import ServeOptions
    from webhook.admission.worker import Deadlines

    mesh = "/".join(args.mesh_configmap) if args.mesh_configmap else "none"
    sidecar = (
        sys.executable,
        "-m",
        "webhook",
        "auditor",
        "--log-format",
        fmt,
        "--mesh-configmap",
        mesh,
        "--report-api",
        args.report_api,
        *_policy_argv(args),
    )
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
        probe_port=args.probe_port or None,
        deadlines=Deadlines(args.handshake_timeout, args.header_timeout, args.body_timeout, args.response_timeout),
        log_level=level,
        log_format=fmt,
        metrics_cache=args.metrics_cache,
        probe_tls=args.probe_tls,
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
        state_poll_interval=args.state_poll_interval,
        sync_timeout=args.sync_timeout,
        mesh_configmap=args.mesh_configmap,
    )
    return assembly.serve(_serve_options(args, level, fmt), wiring)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "auditor": cmd_auditor,
    "check": cmd_check,
    "audit": cmd_audit,
    "explain": cmd_explain,
    "certs": cmd_certs,
    "codes": cmd_codes,
    "policy": cmd_policy,
}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Flags a subcommand does not know are reported with that subcommand's own usage."""
    ap = parser()
    args, extra = ap.parse_known_args(argv)
    if args.version:
        print(version.describe())
        raise SystemExit(0)
    if args.command is None:
        ap.error("a command is required: " + ", ".join(COMMANDS))
    if extra:
        subparsers(ap)[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        status = COMMANDS[args.command](args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as other CLI tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def plugin_main() -> int:
    """``kubectl waypoint …`` (krew's naming: kubectl-waypoint): the same commands."""
    return main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
