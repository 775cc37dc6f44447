"""A real ``waypoint-webhook serve`` (gunicorn, gthread, TLS) on a loopback port per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.running import ROOT, Server, start_server, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("srv"), ROOT / "examples" / "state")
    yield srv
    stop_server(srv)
