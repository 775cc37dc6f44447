"""Property-based robustness tests. ``make test`` runs the reproducible ``ci`` profile (fixed
seed, so a failure is the same failure on every run); ``HYPOTHESIS_PROFILE=deep`` explores more."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("deep", max_examples=20000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
