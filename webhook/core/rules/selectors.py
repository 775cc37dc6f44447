"""Label selectors as Gateway API and istiod evaluate them (docs/rules.md P3).

The CRD schema accepts selectors that Kubernetes' ``LabelSelectorAsSelector`` rejects (unknown
operator, In/NotIn without values, Exists with values, bad keys or values). istiod cannot
evaluate those, so :func:`selector_problem` names the first defect and callers report
``InvalidAllowedRoutes`` rather than guessing a result.
"""

from __future__ import annotations

from collections.abc import Mapping

from webhook.core.model import Selector


def selector_problem(sel: Selector) -> str | None:
    """The selector's first defect, worked out once per parsed selector (:attr:`Selector.problem`):
    a Gateway UPDATE re-checks its selector for every consumer, and one of 40,000 values must not
    cost 40,000 regular-expression matches each time."""
    return sel.problem


def matches(sel: Selector, labels: Mapping[str, str]) -> bool:
    """matchLabels AND matchExpressions; ``{}`` matches everything. Assumes a valid selector."""
    for key, value in sel.match_labels.items():
        if labels.get(key) != value:
            return False
    for r in sel.expressions:
        present = r.key in labels
        if r.operator == "In":
            ok = present and labels[r.key] in r.value_set
        elif r.operator == "NotIn":
            ok = not present or labels[r.key] not in r.value_set
        elif r.operator == "Exists":
            ok = present
        else:
            ok = not present
        if not ok:
            return False
    return True
