"""promtool (built from the Go module proxy by tests/e2e/promtool/build.sh) and the series a real
scrape gives it: rule unit tests are written on the metric names and label sets the webhook and
kube-apiserver really export, so a renamed metric or label breaks them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from testkit.tools import built

ROOT = Path(__file__).resolve().parents[1]


def promtool_bin() -> Path:
    return built("tests/e2e/promtool/build.sh")


@dataclass
class Scrape:
    """Every sample of one or more /metrics texts, by sample name, with the labels a Prometheus
    target adds (under the scraped ones: honorLabels, as the shipped PodMonitor sets)."""

    samples: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def add(self, text: str, target: Mapping[str, str]) -> None:
        """Sample names exactly as exposed (a parser would rename a counter without ``_total``)."""
        for line in text.splitlines():
            m = SAMPLE.match(line)
            if m:
                labels = {k: _unescape(v) for k, v in LABEL.findall(m.group(2) or "")}
                self.samples.setdefault(m.group(1), []).append({**target, **labels})

    def series(self, name: str, **override: str) -> str:
        """One scraped sample of ``name`` (the first whose labels agree with ``override`` where the
        override names a label it has), with ``override`` applied; every overridden label must
        exist on the scraped series."""
        found = self.samples.get(name)
        assert found, f"the scrape has no sample named {name}"
        labels = found[0]
        for key in override:
            assert key in labels, f"{name} has no label {key!r}: {sorted(labels)}"
        labels = {**labels, **override}
        body = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        return f"{name}{{{body}}}"

    def label(self, name: str, key: str) -> str:
        return self.samples[name][0][key]


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _unescape(value: str) -> str:
    return value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
