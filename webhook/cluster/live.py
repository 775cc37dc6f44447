"""Cluster view that follows the live cluster with list + watch (issue 3).

One thread per resource does what an informer does: list (paginated), then watch from the
list's resourceVersion with bookmarks; on ``410 Gone`` it relists; on any other failure it
reconnects with capped exponential backoff and jitter. Events go into the same
:class:`~webhook.core.index.Index` the file view uses, which keeps only the fields the rules
read. The view is synced once every resource has been listed once; the admission path never
calls the API server.

A resource whose CRD is not installed (Istio not there yet) answers 404: it counts as synced
and empty, and is listed again every ``missing_retry`` seconds until it appears.

Raw JSON is read with the client's ``call_api`` (no model deserialisation), which keeps watch
processing cheap and lets one code path serve core and custom resources alike.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines

from webhook.cluster.files import mesh_of
from webhook.core.index import Index, IndexView
from webhook.core.kinds import WATCHED
from webhook.core.model import Malformed
from webhook.kube.api import Gone, HttpError, NotServed, list_pages
from webhook.kube.config import client_configuration

log = logging.getLogger(__name__)


class WatchCounters(Protocol):
    """What the view counts as it follows the cluster; the server's metrics implement it, so the
    view needs no metrics library (and the audit process counts nothing)."""

    def relisted(self, resource: str, reason: str) -> None: ...

    def applied(self, resource: str, event_type: str) -> None: ...


class Uncounted:
    """Counters that count nothing: the audit's view, and tests."""

    def relisted(self, resource: str, reason: str) -> None:
        return None

    def applied(self, resource: str, event_type: str) -> None:
        return None


@dataclass(frozen=True)
class Resource:
    name: str  # for logs and metrics
    path: str  # collection path across all namespaces
    api_version: str
    kind: str
    label_selector: str | None = None
    field_selector: str | None = None
    # A resource the view can do without (istiod's MeshConfig): forbidden or absent is "not there".
    optional: bool = False


# Pods only matter when they carry their own reference (a label-selector watch keeps the view small
# on clusters with many pods). Services are watched whole: a Service can reference a waypoint with
# only a canary label (R6) while its primary is inherited, and a label selector cannot say "this
# key or that one"; the index keeps only the Services that reference a waypoint. ServiceEntries and
# WorkloadEntries are watched whole because endpoint and spec labels can reference waypoints (R4).
RESOURCES: tuple[Resource, ...] = tuple(
    Resource(k.resource, k.collection, k.api_version(), k.kind, k.watch_selector) for k in WATCHED
)


# The continuous audit watches the same resources, Pods whole: a Pod can carry a waypoint key
# other than use-waypoint (dataplane-mode, a misplaced annotation) and still be wrong.
AUDIT_RESOURCES: tuple[Resource, ...] = tuple(replace(r, label_selector=None) for r in RESOURCES)


def mesh_resource(configmap: tuple[str, str]) -> Resource:
    """V1: the ConfigMap holding istiod's MeshConfig (``istio`` in istiod's namespace; for a
    revision, ``istio-<revision>``). Reading it needs a Role in that namespace
    (manifests/mesh-config/); without one the view goes on without it."""
    namespace, name = configmap
    return Resource(
        "mesh-config",
        f"/api/v1/namespaces/{namespace}/configmaps",
        "v1",
        "ConfigMap",
        field_selector=f"metadata.name={name}",
        optional=True,
    )


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


class Watcher:
    """List and watch one resource into the shared index."""

    def __init__(self, view: LiveView, resource: Resource) -> None:
        self.view, self.resource = view, resource
        self.synced = threading.Event()
        self.missing = False
        self.known: set[tuple[str, str]] = set()
        self.thread = threading.Thread(target=self.run, name=f"watch-{resource.name}", daemon=True)

    # -- HTTP --
    def _get(self, query: list[tuple[str, Any]], timeout: float) -> Any:
        """GET the collection; returns the raw urllib3 response (never preloaded)."""
        api = self.view.api
        method, url, headers, body, post = api.param_serialize(
            "GET",
            self.resource.path,
            query_params=query,
            auth_settings=["BearerToken"],
            header_params={"Accept": "application/json"},
        )
        raw = api.call_api(method, url, headers, body, post, _request_timeout=(10, timeout)).response
        if raw.status >= 400:
            text = raw.data.decode("utf-8", "replace")[:300]
            raw.release_conn()
            if raw.status == 404 or (raw.status == 403 and self.resource.optional):
                raise NotServed(text)
            if raw.status == 410:
                raise Gone(text)
            raise RuntimeError(f"HTTP {raw.status}: {text}")
        return raw

    def _selector(self) -> list[tuple[str, Any]]:
        r = self.resource
        out = [("labelSelector", r.label_selector)] if r.label_selector else []
        return out + ([("fieldSelector", r.field_selector)] if r.field_selector else [])

    # -- list --
    def relist(self, reason: str) -> str:
        """List page by page, applying each page before the next is fetched: only one page of raw
        objects is ever held (a 100,000-Pod list held whole costs hundreds of MiB of dicts that
        the index then trims to almost nothing). Objects the list no longer holds are deleted
        once the last page is in."""
        self.view.counters.relisted(self.resource.name, reason)
        rv = ""
        seen: set[tuple[str, str]] = set()
        try:
            for page in list_pages(self.view.api, self.resource.path, self._selector(), timeout=(10, 60)):
                rv = str((page.get("metadata") or {}).get("resourceVersion") or "")
                self._apply_page(page.pop("items", None) or [], seen)
                del page
        except HttpError as e:
            if self.resource.optional and e.status == 403:
                raise NotServed(e.message) from None  # an optional resource we may not read: not there
            raise
        for ns, name in self.known - seen:
            self._apply(self._stub(ns, name), deleted=True)
        self.known = seen
        return rv

    def _apply_page(self, items: list[dict[str, Any]], seen: set[tuple[str, str]]) -> None:
        while items:
            item = items.pop()  # dropped as soon as it is applied
            item.setdefault("apiVersion", self.resource.api_version)
            item.setdefault("kind", self.resource.kind)
            self._apply(item, deleted=False)
            seen.add(_key(item))

    def _stub(self, ns: str, name: str) -> dict[str, Any]:
        meta = {"name": name, **({"namespace": ns} if ns else {})}
        return {"apiVersion": self.resource.api_version, "kind": self.resource.kind, "metadata": meta}

    def _apply(self, obj: dict[str, Any], deleted: bool) -> None:
        if self.resource.kind == "ConfigMap":
            self.view.index.mesh = None if deleted else mesh_of(obj, _key(obj))
        try:
            self.view.index.apply(obj, deleted=deleted)
        except Malformed as e:
            log.warning("ignoring malformed %s %s/%s: %s", self.resource.kind, *_key(obj), e)
        if self.view.observer is not None:
            self.view.observer(obj, deleted)

    # -- watch --
    def watch(self, rv: str) -> str:
        timeout = 290 + random.randint(0, 20)  # spread reconnects like client-go's jitter
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", rv),
            ("timeoutSeconds", timeout),
            *self._selector(),
        ]
        resp = self._get(query, timeout + 30)
        try:
            for line in iter_resp_lines(resp):
                event = json.loads(line)
                etype, obj = event.get("type"), event.get("object") or {}
                if etype == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message", "resourceVersion too old"))
                    raise RuntimeError(f"watch error: {obj.get('message', obj)}")
                rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                if etype == "BOOKMARK":
                    continue
                obj.setdefault("apiVersion", self.resource.api_version)
                obj.setdefault("kind", self.resource.kind)
                deleted = etype == "DELETED"
                self._apply(obj, deleted)
                (self.known.discard if deleted else self.known.add)(_key(obj))
                self.view.counters.applied(self.resource.name, str(etype).lower())
        finally:
            resp.release_conn()
        return rv

    def run(self) -> None:
        """List, then watch until the watch ends; on any failure, wait and relist.

        Every retry waits, 410 Gone included (an API server answering every watch with 410 must
        not be answered with a LIST storm), with exponential backoff and full jitter. Only a
        watch that stayed healthy for ``healthy_after`` seconds resets the backoff: a LIST that
        works followed by a watch that fails at once is still a failure."""
        backoff = self.view.backoff_base
        reason = "initial"
        while not self.view.stopped.is_set():
            try:
                rv = self.relist(reason)
                if self.missing:
                    log.info("%s: resource is now served", self.resource.name)
                self.missing = False
                self.synced.set()
                while not self.view.stopped.is_set():
                    started = time.monotonic()
                    rv = self.watch(rv)
                    if time.monotonic() - started >= self.view.healthy_after:
                        backoff = self.view.backoff_base
            except Gone as e:
                log.info("%s: %s; relisting in %.1fs", self.resource.name, e, backoff)
                reason = "expired"
            except NotServed:  # CRD not installed: nothing of this kind can exist yet
                if not self.missing:
                    what = (
                        "not readable (no such ConfigMap, or no Role for it: manifests/mesh-config/); "
                        "ServiceEntry visibility (V1) is not checked"
                        if self.resource.optional
                        else "not served by the API server (CRD missing?)"
                    )
                    log.info("%s: %s; retrying every %.0fs", self.resource.name, what, self.view.missing_retry)
                self.missing = True
                for ns, name in self.known:
                    self._apply(self._stub(ns, name), deleted=True)
                self.known = set()
                self.synced.set()
                self.view.stopped.wait(self.view.missing_retry)
                reason = "missing"
                continue
            except Exception as e:  # connection reset, API server restart, 5xx, timeouts…
                log.warning(
                    "%s: watch failed (%s: %s); retrying in %.1fs", self.resource.name, type(e).__name__, e, backoff
                )
                reason = "reconnect"
            self.view.stopped.wait(backoff * (0.5 + random.random()))  # full jitter around the step
            backoff = min(backoff * 2, self.view.backoff_cap)


class LiveView(IndexView):
    """A :class:`~webhook.core.view.ClusterView` fed by watches."""

    def __init__(
        self,
        api: client.ApiClient,
        counters: WatchCounters | None = None,
        resources: Sequence[Resource] = RESOURCES,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        missing_retry: float = 30.0,
        healthy_after: float = 10.0,
        observer: Callable[[Mapping[str, Any], bool], None] | None = None,
    ) -> None:
        """``observer`` is called with every event after the index has applied it (the continuous
        audit's tracker)."""
        super().__init__(Index())
        self.observer = observer
        self.api = api
        self.counters: WatchCounters = counters or Uncounted()
        self.stopped = threading.Event()
        self.backoff_base, self.backoff_cap, self.missing_retry = backoff_base, backoff_cap, missing_retry
        self.healthy_after = healthy_after
        self.watchers = [Watcher(self, r) for r in resources]

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None, counters: WatchCounters | None = None, **kw: Any) -> LiveView:
        return cls(client.ApiClient(client_configuration(kubeconfig)), counters, **kw)

    def start(self) -> None:
        for w in self.watchers:
            w.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(w.synced.wait(max(0.0, deadline - time.monotonic())) for w in self.watchers)

    def synced(self) -> bool:
        return all(w.synced.is_set() for w in self.watchers)
