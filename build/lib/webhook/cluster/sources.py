"""Where the one-off audit reads objects from: YAML files, or the API server page by page.

A source is called twice (the audit builds its view in a first pass and judges in a second), so
it is a function that starts a fresh iteration, never a list held in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from webhook.cluster.files import manifest_files, read_documents
from webhook.core.kinds import KINDS, WATCHED
from webhook.core.stored import Source
from webhook.kube import api as kubeapi

# What the audit lists from a live cluster: every handled kind, whole (no label selector: an
# unlabelled Pod can still inherit its namespace's waypoint), the workloads included, whose pod
# templates are judged as Pods. (path, apiVersion, kind)
LIVE: tuple[tuple[str, str, str], ...] = tuple(
    (k.collection, k.api_version(), k.kind) for k in (*WATCHED, *(k for k in KINDS if not k.watch_version))
)


def state_source(paths: Sequence[str]) -> Source:
    """Objects from YAML files (a file or a directory each), as ``--state`` reads them."""

    def docs() -> Iterator[tuple[dict[str, Any], str]]:
        for p in paths:
            for f in manifest_files(Path(p)):
                for doc in read_documents(f):
                    yield doc.obj, doc.source

    return docs


def live_source(api: Any, progress: Callable[[str], None]) -> Source:
    """Objects from the API server, listed page by page (500 at a time); a resource the cluster
    does not serve (a CRD not installed) is skipped."""

    def docs() -> Iterator[tuple[dict[str, Any], str]]:
        for path, api_version, kind in LIVE:
            count = 0
            try:
                for item in kubeapi.list_items(api, path):
                    item.setdefault("apiVersion", api_version)
                    item.setdefault("kind", kind)
                    count += 1
                    yield item, "cluster"
            except kubeapi.NotServed:
                pass
            progress(f"{path.rsplit('/', 1)[1]}: {count}")

    return docs
