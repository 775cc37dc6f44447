"""Where the one-off audit (and ``check --kubeconfig``) reads objects from: YAML files, or the API
server page by page.

A source is called twice (the audit builds its view in a first pass and judges in a second), so
it is a function that starts a fresh iteration, never a list held in memory.

Reading a live cluster says what it could not read, in one line each, and never lies by
omission: a resource whose CRD is not installed is named in ``notices`` and the others are still
read; one the credentials may not list is named too, and skipped when the judgement does not
depend on it (the workloads, whose pod templates are judged as Pods; GatewayClasses, without
which the waypoint classes are known by name only); an unreachable API server, refused
credentials, or any other forbidden resource is :class:`ClusterUnreadable`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from webhook.cluster.files import mesh_of
from webhook.cluster.inputs import Inputs, files_of, read_file
from webhook.core.kinds import KINDS, KindSpec, Role
from webhook.core.model import MeshConfig
from webhook.kube import api as kubeapi

# The kinds the judgement itself depends on: read even when ``kinds`` names others.
ESSENTIAL = frozenset(k.kind for k in KINDS if k.role in (Role.GATEWAY, Role.CLASS, Role.NAMESPACE))
VIEW_ROLE = "the ClusterRole waypoint-webhook-view"
# Kinds the view role does not grant: skipped with a notice when the credentials cannot list them.
OPTIONAL_ROLES = {
    Role.WORKLOAD: "their pod templates are not judged",
    Role.POLICY: "they are not judged",
    Role.ROUTE: "they are not judged",
}


class ClusterUnreadable(Exception):
    """The cluster could not be read well enough to judge it (exit status 3); one line."""


class StateSource:
    """Objects from YAML files and directories, read as ``check`` reads its inputs (Helm charts,
    kustomizations and other non-manifests skipped, unreadable files named, never fatal), one
    file at a time: memory holds the cluster view, not the files. What the last pass skipped and
    could not read is in ``inputs``."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)
        self.inputs = Inputs()
        self.mesh: MeshConfig | None = None  # V1: from a ConfigMap istio-system/istio among the files

    def __call__(self) -> Iterator[tuple[dict[str, Any], str]]:
        self.inputs = Inputs()
        for path in files_of(self.paths, True, self.inputs):
            for doc in read_file(path, self.inputs, keep_nodes=False):
                self.mesh = mesh_of(doc.obj) or self.mesh
                yield doc.obj, doc.source


def state_source(paths: Sequence[str]) -> StateSource:
    return StateSource(paths)


def _collection(k: KindSpec, namespace: str | None) -> str:
    if namespace is None or k.cluster_scoped:
        return k.collection
    v = k.watch_version or k.versions[0]
    prefix = f"/apis/{k.group}/{v}" if k.group else f"/api/{v}"
    return f"{prefix}/namespaces/{namespace}/{k.resource}"


def _unreachable(api: Any, e: Exception) -> ClusterUnreadable:
    host = getattr(getattr(api, "configuration", None), "host", "") or "the API server"
    reason = getattr(e, "reason", None) or e
    return ClusterUnreadable(f"cannot reach the API server at {host}: {type(reason).__name__}: {reason}")


class LiveSource:
    """Objects from the API server, listed page by page (500 at a time), with what could not be read
    in ``notices``. ``namespace`` limits every namespaced listing to it (Gateways are still listed
    cluster-wide when allowed: a reference may cross namespaces); ``kinds`` limits what is read,
    and makes a missing or forbidden one of them an error."""

    def __init__(
        self,
        api: Any,
        progress: Callable[[str], None] = lambda line: None,
        namespace: str | None = None,
        kinds: frozenset[str] = frozenset(),
    ) -> None:
        self.api, self.progress, self.namespace, self.kinds = api, progress, namespace, kinds
        self.notices: list[str] = []

    def _note(self, text: str) -> None:
        if text not in self.notices:
            self.notices.append(text)

    def __call__(self) -> Iterator[tuple[dict[str, Any], str]]:
        for k in KINDS:
            if self.kinds and k.kind not in self.kinds and k.kind not in ESSENTIAL:
                continue
            yield from self._resource(k)

    def _resource(self, k: KindSpec) -> Iterator[tuple[dict[str, Any], str]]:
        paths = [_collection(k, self.namespace)]
        if self.namespace and k.role is Role.GATEWAY:
            paths.insert(0, k.collection)  # cluster-wide first, for cross-namespace references
        for n, path in enumerate(paths):
            try:
                yield from self._list(k, path)
                return
            except kubeapi.HttpError as e:
                if e.status == 403 and n + 1 < len(paths):
                    self._note(f"{k.resource}: not listed cluster-wide ({e.message}); references to waypoints in "
                               f"other namespaces are judged without them")  # fmt: skip
                    continue
                self._refused(k, e)
                return
            except kubeapi.NotServed:
                self._missing(k)
                return

    def _list(self, k: KindSpec, path: str) -> Iterator[tuple[dict[str, Any], str]]:
        count = 0
        try:
            items: Iterable[dict[str, Any]] = (
                self._one_namespace()
                if k.kind == "Namespace" and self.namespace
                else kubeapi.list_items(self.api, path)
            )
            for item in items:
                item.setdefault("apiVersion", k.api_version())
                item.setdefault("kind", k.kind)
                count += 1
                yield item, "cluster"
        except (kubeapi.HttpError, kubeapi.NotServed):
            raise
        except Exception as e:  # urllib3's connection errors, timeouts, TLS
            raise _unreachable(self.api, e) from None
        self.progress(f"{k.resource}: {count}")

    def _one_namespace(self) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{self.namespace}"
        status, body = kubeapi.call(self.api, "GET", path)
        if status == 404:
            return []
        if status >= 300 or not isinstance(body, dict):
            raise kubeapi.HttpError(path, status, kubeapi.status_message(body))
        return [body]

    def _refused(self, k: KindSpec, e: kubeapi.HttpError) -> None:
        if e.status == 401:
            raise ClusterUnreadable(f"the API server refused the credentials (HTTP 401): {e.message}")
        wanted = k.kind in self.kinds
        what = f"{k.resource}.{k.group}" if k.group else k.resource
        if e.status == 403 and not wanted and k.role in OPTIONAL_ROLES:
            self._note(f"{what}: skipped, {e.message} ({OPTIONAL_ROLES[k.role]})")
            return
        if e.status == 403 and not wanted and k.role is Role.CLASS:
            self._note(f"{what}: not readable, {e.message}; waypoint classes are known by name only")
            return
        grant = f"; {VIEW_ROLE} grants it" if e.status == 403 and k.role not in OPTIONAL_ROLES else ""
        raise ClusterUnreadable(f"{e.message} (HTTP {e.status}){grant}")

    def _missing(self, k: KindSpec) -> None:
        what = f"{k.resource}.{k.group}" if k.group else k.resource
        if k.kind in self.kinds:
            raise ClusterUnreadable(f"{what} is not served by the API server: its CRD is not installed")
        self._note(f"{what}: not served (its CRD is not installed): no {k.kind} was read")
