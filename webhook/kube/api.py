"""Raw JSON calls to the API server through the kubernetes client's ``call_api``.

No model (de)serialisation: one code path serves core and custom resources (Leases,
PolicyReports, any CRD), and a resource the server does not serve is just a status code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

Query = list[tuple[str, Any]]


def _json(data: bytes | None) -> Any:
    """A body as JSON; None when it is not (a 404 from a group that is not served is plain text)."""
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


def call(
    api: Any,
    method: str,
    path: str,
    body: Any = None,
    query: Query | None = None,
    timeout: tuple[float, float] = (5, 30),
) -> tuple[int, Any]:
    """One request; returns (HTTP status, JSON body or None). Never raises for an HTTP status."""
    m, url, headers, data, post = api.param_serialize(
        method,
        path,
        body=body,
        query_params=query or [],
        auth_settings=["BearerToken"],
        header_params={"Accept": "application/json", "Content-Type": "application/json"},
    )
    raw = api.call_api(m, url, headers, data, post, _request_timeout=timeout).response
    try:
        return raw.status, _json(raw.data)
    finally:
        raw.release_conn()


class NotServed(Exception):
    """HTTP 404 on a collection: its CRD is not installed."""


class HttpError(RuntimeError):
    """Any other refusal; ``message`` is the API server's own (a Status names the verb and resource)."""

    def __init__(self, path: str, status: int, message: str) -> None:
        super().__init__(f"{path}: HTTP {status}: {message}")
        self.path, self.status, self.message = path, status, message


def status_message(body: Any) -> str:
    """The API server's one-line explanation in a Status body, else the body itself, shortened."""
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(message, str):
        return message
    return str(body)[:300]


class Gone(Exception):
    """HTTP 410: the resourceVersion or continue token is too old; list again from the start."""


def list_pages(
    api: Any, path: str, query: Query | None = None, limit: int = 500, timeout: tuple[float, float] = (10, 120)
) -> Iterator[dict[str, Any]]:
    """Every page of a collection, ``limit`` items each. Raises :class:`NotServed` on 404,
    :class:`Gone` on 410, and RuntimeError on any other failure."""
    cont = None
    while True:
        q = [*(query or []), ("limit", limit)] + ([("continue", cont)] if cont else [])
        status, page = call(api, "GET", path, query=q, timeout=timeout)
        if status == 404:
            raise NotServed(path)
        if status == 410:
            raise Gone(str(page)[:300])
        if status >= 300 or not isinstance(page, dict):
            raise HttpError(path, status, status_message(page))
        yield page
        cont = (page.get("metadata") or {}).get("continue")
        if not cont:
            return


def list_items(
    api: Any, path: str, query: Query | None = None, limit: int = 500, timeout: tuple[float, float] = (10, 120)
) -> Iterator[dict[str, Any]]:
    """Every item of a collection (:func:`list_pages`)."""
    for page in list_pages(api, path, query, limit, timeout):
        yield from page.get("items") or []
