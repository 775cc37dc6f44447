"""What ``check``, ``audit --state`` and ``explain --state`` read, as a CI user hands it over:
files, directories (recursively by default), ``-`` for standard input.

Nothing here is fatal and nothing is dropped in silence. A file that cannot be read or parsed is
an :class:`InputError` naming the file and line, and every other file is still read. What is
clearly no Kubernetes object (a Helm chart's ``Chart.yaml``, ``values*.yaml`` and templates,
``kustomization.yaml``, a document without ``apiVersion`` and ``kind``) is :class:`Skipped` with
the reason, and listed. Names that are not valid UTF-8 are kept as the bytes they are
(:func:`printable` shows them, SARIF percent-encodes them).
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from webhook.cluster.files import SUFFIXES, Document, StateError, read_documents
from webhook.core.result import printable

STDIN = "<stdin>"
# File names that are never manifests, and why (matched case-sensitively, as Helm and kustomize do).
NOT_MANIFESTS: tuple[tuple[str, str], ...] = (
    ("Chart.yaml", "Helm chart metadata"),
    ("Chart.lock", "Helm chart metadata"),
    ("values*.yaml", "Helm values"),
    ("values*.yml", "Helm values"),
    ("values*.json", "Helm values"),
    ("kustomization.yaml", "kustomize configuration"),
    ("kustomization.yml", "kustomize configuration"),
    ("Kustomization", "kustomize configuration"),
)
CHART_DIR = "a Helm chart: its templates are no manifests until rendered (check the output of `helm template`)"
KUSTOMIZE_GROUP = "kustomize.config.k8s.io/"


@dataclass(frozen=True)
class InputError:
    """A file or document that could not be used; ``source`` is ``file`` or ``file:line``."""

    source: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"source": printable(self.source), "message": printable(self.message)}


@dataclass(frozen=True)
class Skipped:
    """Something read but not judged, and why."""

    source: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"source": printable(self.source), "reason": self.reason}


@dataclass
class Inputs:
    documents: list[Document] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)
    files: int = 0


def not_a_manifest(name: str) -> str | None:
    """Why a file of this name is never a manifest, or None."""
    return next((why for pattern, why in NOT_MANIFESTS if fnmatch.fnmatchcase(name, pattern)), None)


def _walk(root: Path, recursive: bool, out: Inputs) -> Iterator[Path]:
    """Manifest files below ``root`` in sorted order; a Helm chart directory is skipped whole."""
    for current, dirs, files in os.walk(root, followlinks=False):
        here = Path(current)
        if "Chart.yaml" in files:
            out.skipped.append(Skipped(str(here), CHART_DIR))
            dirs[:] = []
            continue
        dirs[:] = sorted(dirs) if recursive else []
        for name in sorted(files):
            path = here / name
            if path.suffix not in SUFFIXES:
                continue
            why = not_a_manifest(name)
            if why:
                out.skipped.append(Skipped(str(path), why))
            else:
                yield path


def files_of(paths: Sequence[str], recursive: bool, out: Inputs) -> Iterator[Path]:
    """Each path as given: ``-``, a file (read whatever its suffix), or a directory."""
    for p in paths:
        path = Path(p)
        if p == "-":
            yield Path(STDIN)
        elif path.is_dir():
            yield from _walk(path, recursive, out)
        elif path.is_file():
            why = not_a_manifest(path.name)
            if why:
                out.skipped.append(Skipped(p, why))
            else:
                yield path
        else:
            out.errors.append(InputError(p, "no such file or directory"))


def _why_not_an_object(doc: Document) -> str | None:
    api_version, kind = doc.obj.get("apiVersion"), doc.obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
        return "not a Kubernetes object (no apiVersion and kind)"
    if api_version.startswith(KUSTOMIZE_GROUP):
        return "kustomize configuration"
    return None


def read_file(path: Path, out: Inputs, keep_nodes: bool = True) -> list[Document]:
    """The file's Kubernetes objects; what it holds besides is recorded in ``out``."""
    out.files += 1
    try:
        text = sys.stdin.read() if str(path) == STDIN else None
        docs = read_documents(path, text, keep_nodes=keep_nodes)
    except StateError as e:
        where, _, message = str(e).partition(": ")
        out.errors.append(InputError(where, message))
        return []
    except OSError as e:
        out.errors.append(InputError(str(path), f"cannot read: {e}"))
        return []
    kept = []
    for doc in docs:
        why = _why_not_an_object(doc)
        if why:
            out.skipped.append(Skipped(doc.source, why))
        else:
            kept.append(doc)
    return kept


def collect(paths: Sequence[str], recursive: bool = True) -> Inputs:
    out = Inputs()
    for path in files_of(paths, recursive, out):
        out.documents += read_file(path, out)
    return out
