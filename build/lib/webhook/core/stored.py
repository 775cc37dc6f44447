"""Judging an object as it is stored: what ``audit`` and the continuous audit share.

An object already in the cluster is judged as the CREATE admission would have seen
(:func:`~webhook.core.request.stored_request`): own references at their table severity,
inherited ones as warnings, controller-owned Pods capped at warnings (docs/rules.md B1). Every
namespace is judged, the excluded ones included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from webhook.core.engine import Engine, Settings
from webhook.core.findings import Judged, malformed
from webhook.core.model import Malformed
from webhook.core.request import AdmissionRequest
from webhook.core.view import ClusterView

# Stored objects with where each came from ("cluster", "file:line"): a function that starts a
# fresh iteration each time it is called, so a caller can read them twice without holding them.
Source = Callable[[], Iterator[tuple[dict[str, Any], str]]]


def judge_stored(engine: Engine, req: AdmissionRequest) -> tuple[Judged, ...]:
    """Judge a stored object as a CREATE (SPEC B1). The engine must not exclude namespaces. A
    malformed object is one MalformedObject denial."""
    try:
        return tuple(engine.validate(req).judged)
    except Malformed as e:
        return (malformed(e.field, e.problem),)


def audit_engine(view: ClusterView, settings: Settings) -> Engine:
    """Every namespace is judged, the ones admission excludes included: the exclusion keeps the
    webhook from locking out system namespaces, and is exactly why problems there go unseen."""
    return Engine(view, replace(settings, excluded_namespaces=frozenset()))
