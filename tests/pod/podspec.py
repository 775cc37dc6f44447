"""Turn the shipped Deployment's pod into a ``podman run`` command line, the way kubelet would run it.

Read from the *rendered* manifests at test time, never copied: args, env (field references
resolved as the downward API would), the pod and container securityContext, volume mounts
(Secret volumes with their mode and fsGroup ownership, emptyDir as tmpfs with its size limit),
the service-account token kubelet mounts, memory and CPU limits. Anything this does not know how
to reproduce raises :class:`Unsupported`, so a change to the Deployment can never silently go
untested.

What differs from a kubelet, on purpose and only this: the image reference (the one built by
the tier), and the network (the host's loopback, where the test's kube-apiserver listens; the
container port is then the host port).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|k|M|G)?$")
_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


class Unsupported(ValueError):
    """The Deployment uses something the pod tier cannot reproduce faithfully."""


def quantity_bytes(q: str) -> int:
    m = _QUANTITY.match(str(q))
    if not m:
        raise Unsupported(f"quantity {q!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


@dataclass
class PodRun:
    """What the tier needs to run and judge the container."""

    args: list[str]  # podman run flags, then the image, then the container args
    namespace: str
    port: int  # the webhook's port (named https: the Service's targetPort)
    ports: dict[str, int]  # every TCP container port by name (the probe port among them)
    probes: dict[str, dict[str, Any]]
    grace_seconds: int
    uid: int
    gid: int
    memory_limit: int | None = None
    pre_stop_seconds: int = 0  # lifecycle.preStop.sleep: kubelet spends it inside the grace period
    mounts: dict[str, Path] = field(default_factory=dict)

    def probe_url(self, name: str) -> str:
        """Where kubelet sends probe ``name``: its scheme, its port (by name or number), its path."""
        get = self.probes[name]["httpGet"]
        port = self.ports[get["port"]] if isinstance(get["port"], str) else int(get["port"])
        return f"{get.get('scheme', 'HTTP').lower()}://127.0.0.1:{port}{get['path']}"


def _deployment(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    deps = [d for d in manifests if d.get("kind") == "Deployment"]
    if len(deps) != 1:
        raise Unsupported(f"expected one Deployment in the manifests, found {len(deps)}")
    return deps[0]


def _env(container: dict[str, Any], pod_name: str, namespace: str) -> list[str]:
    out = []
    for e in container.get("env", []):
        if "value" in e:
            out += ["--env", f"{e['name']}={e['value']}"]
            continue
        ref = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        values = {"metadata.namespace": namespace, "metadata.name": pod_name, "status.podIP": "127.0.0.1"}
        if ref not in values:
            raise Unsupported(f"env {e['name']}: valueFrom {e.get('valueFrom')}")
        out += ["--env", f"{e['name']}={values[ref]}"]
    if container.get("envFrom"):
        raise Unsupported("envFrom")
    return out


def _security(pod_sc: dict[str, Any], sc: dict[str, Any]) -> tuple[list[str], int, int, int | None]:
    merged = {**pod_sc, **sc}
    if merged.get("runAsUser") is None:
        raise Unsupported("runAsUser must be set: the tier runs the uid the Deployment names")
    uid = int(merged["runAsUser"])
    gid = int(merged.get("runAsGroup", uid))
    if merged.get("runAsNonRoot") and uid == 0:
        raise Unsupported("runAsNonRoot with runAsUser 0: kubelet would refuse to start it")
    seccomp = merged.get("seccompProfile", {}).get("type", "RuntimeDefault")
    if seccomp != "RuntimeDefault":
        raise Unsupported(f"seccompProfile {seccomp}")
    known = {
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "fsGroup",
        "seccompProfile",
        "allowPrivilegeEscalation",
        "readOnlyRootFilesystem",
        "capabilities",
        "privileged",
    }
    if set(merged) - known:
        raise Unsupported(f"securityContext fields {sorted(set(merged) - known)}")
    if merged.get("privileged"):
        raise Unsupported("privileged")
    flags = ["--user", f"{uid}:{gid}"]
    fs_group = pod_sc.get("fsGroup")
    if fs_group is not None:
        flags += ["--group-add", str(fs_group)]
    if merged.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    if merged.get("readOnlyRootFilesystem"):
        flags += ["--read-only", "--read-only-tmpfs=false"]  # no extra tmpfs kubelet would not add
    caps = merged.get("capabilities", {})
    flags += [f"--cap-drop={c.lower()}" for c in caps.get("drop", [])]
    flags += [f"--cap-add={c.lower()}" for c in caps.get("add", [])]
    return flags, uid, gid, fs_group


def _place(files: dict[str, bytes], into: Path, mode: int, group: int | None) -> None:
    """Files as kubelet writes a Secret or projected volume: the volume's mode, group fsGroup."""
    into.mkdir(parents=True, exist_ok=True)
    os.chmod(into, 0o755)
    for name, data in files.items():
        p = into / name
        p.write_bytes(data)
        os.chmod(p, mode)
        if group is not None:
            shutil.chown(p, group=group)


def pod_run(
    manifests: list[dict[str, Any]],
    image: str,
    workdir: Path,
    secrets: dict[str, dict[str, bytes]],
    sa_token: str,
    api_ca: bytes,
    api_host: str,
    api_port: int,
    pod_name: str = "waypoint-webhook-0",
    name: str = "waypoint-webhook-pod",
) -> PodRun:
    dep = _deployment(manifests)
    namespace = dep["metadata"].get("namespace", "default")
    spec = dep["spec"]["template"]["spec"]
    containers = spec["containers"]
    if len(containers) != 1 or spec.get("initContainers"):
        raise Unsupported("the tier runs exactly one container and no init containers")
    c = containers[0]
    if spec.get("hostNetwork") or spec.get("hostPID"):
        raise Unsupported("host namespaces")
    flags, uid, gid, fs_group = _security(spec.get("securityContext", {}), c.get("securityContext", {}))
    run = ["run", "--detach", "--name", name, "--pull=never", "--network=host", *flags]
    run += _env(c, pod_name, namespace)
    run += ["--env", f"KUBERNETES_SERVICE_HOST={api_host}", "--env", f"KUBERNETES_SERVICE_PORT={api_port}"]
    limits = c.get("resources", {}).get("limits", {})
    memory = quantity_bytes(limits["memory"]) if "memory" in limits else None
    if memory is not None:
        run += ["--memory", str(memory)]
    if "cpu" in limits:
        raise Unsupported("cpu limits")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts: dict[str, Path] = {}
    for vm in c.get("volumeMounts", []):
        vol = volumes[vm["name"]]
        if "secret" in vol:
            sec = vol["secret"]
            host = workdir / "volumes" / vm["name"]
            data = secrets[sec["secretName"]]
            items = sec.get("items")
            if items:
                data = {i["path"]: data[i["key"]] for i in items}
            _place(data, host, sec.get("defaultMode", 0o644), fs_group)
            run += ["--volume", f"{host}:{vm['mountPath']}:ro"]  # Secret volumes are read-only
            mounts[vm["name"]] = host
        elif "emptyDir" in vol:
            ed = vol["emptyDir"] or {}
            if ed.get("medium") == "Memory":
                size = f",tmpfs-size={quantity_bytes(ed['sizeLimit'])}" if "sizeLimit" in ed else ""
                run += ["--mount", f"type=tmpfs,destination={vm['mountPath']},tmpfs-mode=1777{size}"]
            else:
                host = workdir / "volumes" / vm["name"]
                host.mkdir(parents=True, exist_ok=True)
                os.chmod(host, 0o777)  # kubelet's emptyDir mode
                run += ["--volume", f"{host}:{vm['mountPath']}"]
                mounts[vm["name"]] = host
        else:
            raise Unsupported(f"volume {vm['name']}: {sorted(vol)}")
    if spec.get("automountServiceAccountToken", True):
        host = workdir / "volumes" / "serviceaccount"
        _place({"token": sa_token.encode(), "ca.crt": api_ca, "namespace": namespace.encode()}, host, 0o644, fs_group)
        run += ["--volume", f"{host}:{SA_DIR}:ro"]
        mounts["serviceaccount"] = host
    if c.get("command"):
        run += ["--entrypoint", c["command"][0]]
    run += [image, *c.get("command", [])[1:], *c.get("args", [])]
    ports = {p["name"]: int(p["containerPort"]) for p in c.get("ports", []) if p.get("protocol", "TCP") == "TCP"}
    if "https" not in ports:
        raise Unsupported("the tier expects a TCP container port named https (the webhook's)")
    probes = {k: c[k] for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in c}
    for probe in probes.values():
        target = probe["httpGet"]["port"]
        if isinstance(target, str) and target not in ports:
            raise Unsupported(f"probe port {target!r} names no container port")
    pre_stop = c.get("lifecycle", {}).get("preStop", {})
    if set(pre_stop) - {"sleep"}:
        raise Unsupported(f"preStop {sorted(pre_stop)}")
    return PodRun(
        run,
        namespace,
        ports["https"],
        ports,
        probes,
        int(spec.get("terminationGracePeriodSeconds", 30)),
        uid,
        gid,
        memory,
        int(pre_stop.get("sleep", {}).get("seconds", 0)),
        mounts,
    )
