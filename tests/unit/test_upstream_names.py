"""No silent drift from upstream: every Istio label and annotation the rules read is still defined,
as a label or as an annotation, by the ``istio.io/api`` module the tests download
(``label/labels.yaml``, ``annotation/annotations.yaml``). A rename or removal upstream fails here,
before a rule starts judging a key istiod no longer reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from testkit.crds import ISTIO_API_MODULE, module_dir
from webhook.core import model

# (constant in webhook.core.model, where istio.io/api defines it)
LABELS: tuple[str, ...] = (
    "USE_WAYPOINT",
    "USE_WAYPOINT_NAMESPACE",
    "USE_WAYPOINT_CANARY",
    "USE_WAYPOINT_CANARY_NAMESPACE",
)
LABELS += ("WAYPOINT_FOR", "DATAPLANE_MODE", "INGRESS_USE_WAYPOINT", "SIDECAR_INJECT", "MANAGED_BY_GATEWAY")
ANNOTATIONS = ("CANARY_WEIGHT", "INBOUND_BINDING", "NAME_OVERRIDE", "SIDECAR_STATUS")
# Read by istiod but defined outside istio.io/api, so nothing upstream can be checked for them:
# the legacy injection label (istio/istio's inject webhook) and the racing connect strategy
# (istio/istio's ambient index, V2).
UNLISTED = {"INJECTION_LABEL": "istio-injection", "CONNECT_STRATEGY": "istio.io/connect-strategy"}


def _names(path: Path, section: str) -> set[str]:
    doc = yaml.safe_load(path.read_text())
    return {entry["name"] for entry in doc[section]}


@pytest.fixture(scope="module")
def upstream() -> tuple[set[str], set[str]]:
    root = module_dir(ISTIO_API_MODULE)
    return _names(root / "label" / "labels.yaml", "labels"), _names(
        root / "annotation" / "annotations.yaml", "annotations"
    )


@pytest.mark.parametrize("constant", LABELS)
def test_labels_the_rules_read_are_istio_labels(upstream: tuple[set[str], set[str]], constant: str) -> None:
    key = getattr(model, constant)
    assert key in upstream[0], f"{key} ({constant}) is no longer a label of {ISTIO_API_MODULE}"


@pytest.mark.parametrize("constant", ANNOTATIONS)
def test_annotations_the_rules_read_are_istio_annotations(upstream: tuple[set[str], set[str]], constant: str) -> None:
    key = getattr(model, constant)
    assert key in upstream[1], f"{key} ({constant}) is no longer an annotation of {ISTIO_API_MODULE}"


def test_every_istio_key_of_the_model_is_checked_or_listed() -> None:
    """A key added to the model must join one of the lists above."""
    istio = {
        name
        for name, value in vars(model).items()
        if name.isupper() and isinstance(value, str) and ("istio.io/" in value or value == "istio-injection")
    }
    istio -= {"PROXY_PROTOCOL"}  # a listener protocol, not a key
    assert istio == set(LABELS) | set(ANNOTATIONS) | set(UNLISTED), sorted(
        istio ^ (set(LABELS) | set(ANNOTATIONS) | set(UNLISTED))
    )
    assert all(getattr(model, k) == v for k, v in UNLISTED.items())
