"""The live view backs off everywhere, 410 Gone included: against an API server that answers every
watch with ERROR 410, or every request with 500, it makes at most a couple of LISTs per second per
resource (a fake API server on loopback counts them)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client

from webhook.cluster.live import RESOURCES, LiveView

SECONDS = 6.0


class FakeAPI(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str) -> None:
        self.mode, self.lists, self.watches = mode, 0, 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(BaseHTTPRequestHandler):
    server: FakeAPI

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        watch = "watch=true" in self.path
        with self.server.lock:
            if watch:
                self.server.watches += 1
            else:
                self.server.lists += 1
        if self.server.mode == "500":
            body = b'{"kind":"Status","code":500,"message":"etcd is sad"}'
            self.send_response(500)
        elif watch:  # every watch: the resourceVersion is already gone
            body = (
                json.dumps(
                    {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}
                ).encode()
                + b"\n"
            )
            self.send_response(200)
        else:
            body = b'{"kind":"List","items":[],"metadata":{"resourceVersion":"7"}}'
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(params=["410", "500"])
def api(request: pytest.FixtureRequest) -> Iterator[FakeAPI]:
    srv = FakeAPI(request.param)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()


def test_at_most_a_couple_of_lists_per_second_per_resource(api: FakeAPI) -> None:
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{api.server_address[1]}"
    resource = next(r for r in RESOURCES if r.name == "gateways")
    view = LiveView(client.ApiClient(cfg), resources=(resource,))
    view.start()
    time.sleep(SECONDS)
    view.stop()
    per_second = api.lists / SECONDS
    print(f"backoff: persistent {api.mode}: {api.lists} LISTs and {api.watches} watches in {SECONDS:g}s")
    assert api.lists >= 2, "the view kept retrying"
    assert per_second <= 2.0, f"{api.lists} LISTs in {SECONDS}s under a persistent {api.mode}"
