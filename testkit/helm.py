"""The real helm (built from the Go module proxy by tests/e2e/helm/build.sh) against a control plane.

:func:`loopback_renderer` writes a helm post-renderer that changes one thing in what the chart
renders: ``clientConfig.service`` becomes a loopback URL (the test's webhook process), because a
control plane without nodes has no Service network. Everything else (rules, selectors, failure
policies, caBundle, the objects and their order) is the chart's own.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testkit.tools import built

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "waypoint-webhook"


def helm_bin() -> Path:
    return built("tests/e2e/helm/build.sh")


@dataclass
class Helm:
    kubeconfig: Path
    bin: Path
    home: Path  # helm's config, cache and data: the test's own, never the user's

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),  # client-go caches discovery under $HOME/.kube, never in the repository
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        p = subprocess.run([str(self.bin), *args], capture_output=True, text=True, env=env, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    def template(self, *args: str, namespace: str = "waypoint-webhook", kube: str = "1.36.0") -> list[dict[str, Any]]:
        out = self("template", "waypoint-webhook", str(CHART), "-n", namespace, "--kube-version", kube, *args).stdout
        return [d for d in yaml.safe_load_all(out) if d]


RENDERER = """#!{python}
import sys, yaml
port = {port}
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
for d in docs:
    if d.get("kind") in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        for wh in d["webhooks"]:
            path = wh["clientConfig"].pop("service")["path"]
            wh["clientConfig"]["url"] = f"https://127.0.0.1:{{port}}{{path}}"
sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
"""


def loopback_renderer(path: Path, port: int) -> Path:
    path.write_text(RENDERER.format(python=sys.executable, port=port))
    path.chmod(0o755)
    return path
