"""The floor: the webhook's exact serving stack (gunicorn gthread, TLS, Flask, orjson) around a
trivial handler that decodes the AdmissionReview and answers allowed. The webhook's throughput
is reported as a ratio of this, which cancels out how fast the machine happens to be."""

from __future__ import annotations

import sys

import orjson
from flask import Flask, Response, request

from webhook.admission import serving
from webhook.admission.tls import CertReloader


def build_app(_: CertReloader | None) -> Flask:
    import os

    if os.environ.get("BENCH_SWITCH"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH"]))
    app = Flask("floor")

    @app.post("/validate")
    @app.post("/mutate")
    def review() -> Response:
        req = orjson.loads(request.get_data())["request"]
        out = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": req["uid"], "allowed": True},
        }
        return Response(orjson.dumps(out), mimetype="application/json")

    @app.get("/readyz")
    def readyz() -> Response:
        return Response(b'{"status":"ready"}', mimetype="application/json")

    return app


if __name__ == "__main__":
    port, cert, key, workers, threads = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    serving.run(
        serving.ServeOptions(
            host="127.0.0.1",
            port=int(port),
            tls_cert=cert,
            tls_key=key,
            workers=int(workers),
            threads=int(threads),
            log_level="warning",
        ),
        build_app,
    )
