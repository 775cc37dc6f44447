"""The live view relists page by page (issue 18, item 3): each page is applied to the index before
the next one is requested, so a 100,000-Pod list never sits in memory whole, and what the new list
no longer holds is deleted once the last page is in."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from webhook.cluster import live
from webhook.cluster.live import LiveView, Resource

SERVICES = Resource("services", "/api/v1/services", "v1", "Service")


def _service(i: int) -> dict[str, Any]:
    return {"metadata": {"name": f"s{i}", "namespace": "ns", "labels": {"istio.io/use-waypoint": "wp"}}}


def _view(applied: list[tuple[str, bool]]) -> LiveView:
    def observe(obj: Mapping[str, Any], deleted: bool) -> None:
        applied.append((obj["metadata"]["name"], deleted))

    return LiveView(api=None, resources=(SERVICES,), observer=observe)  # type: ignore[arg-type]


def test_each_page_is_applied_before_the_next_is_requested(monkeypatch: pytest.MonkeyPatch) -> None:
    applied: list[tuple[str, bool]] = []
    seen_when_requested: list[int] = []

    def pages(api: Any, path: str, query: Any = None, **kw: Any) -> Iterator[dict[str, Any]]:
        for p in range(3):
            seen_when_requested.append(len(applied))
            items = [_service(p * 10 + i) for i in range(10)]
            yield {"metadata": {"resourceVersion": str(p + 1), **({"continue": "c"} if p < 2 else {})}, "items": items}

    monkeypatch.setattr(live, "list_pages", pages)
    view = _view(applied)
    rv = view.watchers[0].relist("initial")
    assert rv == "3"
    assert seen_when_requested == [0, 10, 20], "a page was held until the whole list was in"
    assert len(view.consumers_of("ns", "wp")) == 30


def test_objects_missing_from_a_relist_are_deleted_after_the_last_page(monkeypatch: pytest.MonkeyPatch) -> None:
    applied: list[tuple[str, bool]] = []
    lists = [[_service(1), _service(2), _service(3)], [_service(2)]]

    def pages(api: Any, path: str, query: Any = None, **kw: Any) -> Iterator[dict[str, Any]]:
        yield {"metadata": {"resourceVersion": "9"}, "items": lists.pop(0)}

    monkeypatch.setattr(live, "list_pages", pages)
    view = _view(applied)
    watcher = view.watchers[0]
    watcher.relist("initial")
    applied.clear()
    watcher.relist("expired")
    assert applied[0] == ("s2", False)
    assert sorted(applied[1:]) == [("s1", True), ("s3", True)]
    assert [r.name for r in view.consumers_of("ns", "wp")] == ["s2"]
