"""Label selectors as Gateway API and istiod evaluate them (docs/rules.md P3).

The CRD schema accepts selectors that Kubernetes' ``LabelSelectorAsSelector`` rejects (unknown
operator, In/NotIn without values, Exists with values, bad keys or values). istiod cannot
evaluate those, so :func:`selector_problem` names the first defect and callers report
``InvalidAllowedRoutes`` rather than guessing a result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from webhook.core.model import Requirement, Selector, quoted

_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def is_label_key(key: str) -> bool:
    prefix, sep, name = key.rpartition("/")
    if sep and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.fullmatch(prefix)):
        return False
    return 0 < len(name) <= 63 and _NAME.fullmatch(name) is not None


def is_label_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and _NAME.fullmatch(value) is not None)


def _requirement_problem(r: Requirement) -> str | None:
    if not is_label_key(r.key):
        return f"key {quoted(r.key)} is not a valid label key"
    if r.operator not in OPERATORS:
        return f"operator {quoted(r.operator)} is not one of {', '.join(OPERATORS)}"
    if r.operator in ("In", "NotIn") and not r.values:
        return f"operator {r.operator} on {quoted(r.key)} needs at least one value"
    if r.operator in ("Exists", "DoesNotExist") and r.values:
        return f"operator {r.operator} on {quoted(r.key)} must not have values"
    bad = next((v for v in r.values or () if not is_label_value(v)), None)
    if bad is not None:
        return f"value {quoted(bad)} for {quoted(r.key)} is not a valid label value"
    return None


def selector_problem(sel: Selector) -> str | None:
    for key, value in sel.match_labels.items():
        if not is_label_key(key):
            return f"matchLabels key {quoted(key)} is not a valid label key"
        if not is_label_value(value):
            return f"matchLabels value {quoted(value)} for {quoted(key)} is not a valid label value"
    for r in sel.expressions:
        problem = _requirement_problem(r)
        if problem:
            return problem
    return None


def matches(sel: Selector, labels: Mapping[str, str]) -> bool:
    """matchLabels AND matchExpressions; ``{}`` matches everything. Assumes a valid selector."""
    for key, value in sel.match_labels.items():
        if labels.get(key) != value:
            return False
    for r in sel.expressions:
        present = r.key in labels
        if r.operator == "In":
            ok = present and labels[r.key] in (r.values or ())
        elif r.operator == "NotIn":
            ok = not present or labels[r.key] not in (r.values or ())
        elif r.operator == "Exists":
            ok = present
        else:
            ok = not present
        if not ok:
            return False
    return True
