"""The profile table of ``make bench-peers`` (bench/profile.py): py-spy's collapsed stacks are
attributed to the innermost stage of the request path that a frame belongs to."""

from __future__ import annotations

import pytest

from bench.profile import OTHER, stage_of, summarise

RAW = [
    # A review: gunicorn → Flask → the admission shell → the engine; the engine's time is the rules'.
    'process 1:"gunicorn";handle (gunicorn/workers/gthread.py:271);'
    "full_dispatch_request (flask/app.py:880);review (webhook/admission/review.py:40);"
    "validate (webhook/core/engine.py:99) 30",
    # JSON decoding called from the shell counts as JSON, not as the shell.
    'process 1:"gunicorn";review (webhook/admission/review.py:33);loads (json/__init__.py:346) 10',
    'process 1:"gunicorn";handle (gunicorn/workers/gthread.py:271);recv_into (ssl.py:1314) 50',
    'process 1:"gunicorn";<module> (<frozen runpy>:88) 10',
    "not a stack line",
]


def test_stage_is_the_innermost_matching_frame() -> None:
    p = summarise(RAW)
    shares = dict(p.stages)
    assert p.samples == 100
    assert shares["rules and cluster view (webhook/core)"] == pytest.approx(0.30)
    assert shares["JSON encode/decode"] == pytest.approx(0.10)
    assert shares["TLS and sockets (ssl, socket)"] == pytest.approx(0.50)
    assert shares[OTHER] == pytest.approx(0.10)
    assert "admission shell (webhook/admission)" not in shares
    assert p.stages[0][0] == "TLS and sockets (ssl, socket)"  # largest first


def test_leaves_and_markdown() -> None:
    p = summarise(RAW)
    assert p.leaves[0] == ("recv_into (ssl.py:1314)", 0.5)
    text = p.markdown()
    assert "100 samples" in text and "| TLS and sockets (ssl, socket) | 50.0 % |" in text


def test_unmatched_stack_is_other() -> None:
    assert stage_of(["<module> (<frozen runpy>:88)"]) == OTHER
