"""A seeded random differential: random valid worlds (tests/oracle/worlds.py) replayed into the
real istiod and judged by the webhook, compared consumer by consumer with the same table as
test_differential.py. ``WAYPOINT_WORLDS`` sets how many (``make test-random-worlds`` runs 150;
``make test`` a short run), ``WAYPOINT_WORLDS_SEED`` which."""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest

from testkit.harness import Kubectl
from testkit.webhook_process import Webhook
from tests.oracle.istiod_process import Istiod
from tests.oracle.test_differential import _apply_all, _disagreement, _snapshot
from tests.oracle.worlds import worlds

pytestmark = pytest.mark.oracle
COUNT = int(os.environ.get("WAYPOINT_WORLDS", "30"))
SEED = int(os.environ.get("WAYPOINT_WORLDS_SEED", "1"))
REQUIRED = 0.999  # of the consumers compared


def test_random_worlds_agree_with_istiod(
    oracle_kubectl: Kubectl, istiod: Istiod, unregistered_webhook: Webhook
) -> None:
    cases = worlds(COUNT, SEED)
    _apply_all(oracle_kubectl, cases)
    expected = {key for c in cases for key in c.observe}
    start, previous, snap = time.monotonic(), None, {}
    while time.monotonic() - start < 180:  # until both sides have settled: two equal snapshots
        snap = _snapshot(oracle_kubectl, unregistered_webhook, istiod, prefix="dr")
        if snap == previous and set(snap) >= expected and time.monotonic() - start > 5:
            break
        previous = snap
        time.sleep(2)
    assert istiod.alive(), istiod.log.read_text()[-3000:]
    disagreements = []
    for c in cases:
        for key in c.observe:
            state, findings = snap[key]
            if problem := _disagreement(state, findings):
                disagreements.append(f"{c.id}: {key[0]} {key[1]}/{key[2]}: {problem}")
    agreed = 1 - len(disagreements) / len(expected)
    reasons = Counter(state[1] if state else "no condition" for state, _ in (snap[k] for k in expected))
    print(
        f"\nrandom worlds: {COUNT} worlds (seed {SEED}), {len(expected)} consumers, {agreed:.2%} agree; istiod: {dict(reasons)}"
    )
    assert len(reasons) >= 3, f"the worlds exercise too little: {reasons}"
    assert agreed >= REQUIRED, "\n".join(disagreements)
