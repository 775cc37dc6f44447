"""Cluster view from YAML files: the embedded default for ``make run`` and the test fixture.

``PATH`` is a file or a directory of multi-document YAML (``.yaml``, ``.yml``, ``.json``); a
``kind: List`` is flattened. The view reloads when a file's size or mtime changes, keeping the
last good state when the new one is unreadable, so editing a file never takes the server down.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from webhook.core.index import Index, IndexView, settle_heap
from webhook.core.model import Malformed, MeshConfig, parse_mesh_config

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml", ".json")
# libyaml's parser when PyYAML was built with it: same documents and marks, several times faster.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_FILE_BYTES = 64 * 1024 * 1024
# YAML aliases let a few bytes name a huge tree ("billion laughs"): a document may expand to at
# most this many times its own node count (plus some slack for small files using anchors).
MAX_EXPANSION = 10
EXPANSION_SLACK = 10_000


class StateError(Exception):
    """Unusable state or input file; the message names the file and, for YAML, the line."""


@dataclass(frozen=True)
class Document:
    source: str  # "file.yaml:12": where the document (or the List item) starts, for messages
    obj: dict[str, Any]
    # The composed YAML of the document, kept only when asked for (``check``): where each key is.
    node: yaml.Node | None = field(default=None, compare=False, repr=False)

    def position(self, path: str) -> tuple[int, int] | None:
        """Line and column (1-based) of the key a finding's field names (``spec.listeners[0].port``,
        ``metadata.labels[istio.io/use-waypoint]``), or of the deepest part of it that exists; None
        without a node. A field that is no path (an inherited reference) gives the document's start."""
        if self.node is None:
            return None
        mark = locate(self.node, field_path(path)).start_mark
        return mark.line + 1, mark.column + 1


_SEGMENT = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]")


def field_path(text: str) -> list[str | int]:
    """``spec.listeners[0].allowedRoutes`` -> ["spec", "listeners", 0, "allowedRoutes"]; a label key
    in brackets stays whole (``labels[istio.io/use-waypoint]``). Text that is no path gives []."""
    if not text or " " in text:
        return []
    out: list[str | int] = []
    for name, bracket in _SEGMENT.findall(text):
        out.append(name if name else int(bracket) if bracket.isdigit() else bracket)
    return out


def locate(node: yaml.Node, path: list[str | int]) -> yaml.Node:
    """The key node of the last segment of ``path`` found below ``node`` (for a list index, the item)."""
    found = node
    for segment in path:
        if isinstance(node, yaml.MappingNode) and isinstance(segment, str):
            pair = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == segment), None)
            if pair is None:
                return found
            found, node = pair
        elif isinstance(node, yaml.SequenceNode) and isinstance(segment, int) and segment < len(node.value):
            found = node = node.value[segment]
        else:
            return found
    return found


def manifest_files(path: Path) -> list[Path]:
    """The file itself, or every manifest below a directory (sorted)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    if path.exists():
        return [path]
    raise StateError(f"{path}: no such file or directory")


def _flatten(obj: Any) -> Iterator[Any]:
    if isinstance(obj, dict) and obj.get("kind") == "List" and isinstance(obj.get("items"), list):
        for item in obj["items"]:
            yield from _flatten(item)
    else:
        yield obj


def _sizes(node: yaml.Node) -> tuple[int, int]:
    """(expanded, distinct): how many nodes ``node`` becomes once aliases are expanded, and how
    many it really holds. Composed YAML is a graph in which an alias is the same node object seen
    again; expansion turns it into a tree. Sizes are memoised per node, so this is linear in the
    graph, and the memo's size is the distinct count."""
    memo: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        known = memo.get(id(n))
        if known is not None:
            return known
        total = 1
        if isinstance(n, yaml.SequenceNode):
            total += sum(size(child) for child in n.value)
        elif isinstance(n, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in n.value)
        memo[id(n)] = total
        return total

    return size(node), len(memo)


def _line_of(text: str, error: BaseException) -> int | None:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    if mark is not None:
        return int(mark.line) + 1
    position = getattr(error, "position", None)  # the reader's errors (a NUL byte) have only this
    return text.count("\n", 0, position) + 1 if isinstance(position, int) else None


def _read_text(path: Path, text: str | None) -> str:
    try:
        if text is None:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise StateError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
            text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise StateError(f"{path}: cannot read: {e}") from e
    if len(text) > MAX_FILE_BYTES:
        raise StateError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    return text


def read_documents(path: Path, text: str | None = None, *, keep_nodes: bool = False) -> list[Document]:
    """Parse one file into documents, with errors that name the file and line. ``keep_nodes``
    keeps each document's YAML (JSON files are read as YAML then), so that a finding can name the
    line and column of its key (:meth:`Document.position`).

    Bounded: files over ``MAX_FILE_BYTES``, and documents whose aliases expand them more than
    ``MAX_EXPANSION`` times, are refused before anything walks them."""
    text = _read_text(path, text)
    if path.suffix == ".json" and not keep_nodes:
        return _read_json(path, text)
    docs: list[Document] = []
    loader = _Loader(text)
    where = [0]  # the line of the document being read, for errors
    try:
        _read_yaml(path, loader, docs, where, keep_nodes)
    except StateError:
        raise
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or getattr(e, "reason", None) or str(e)
        raise StateError(f"{path}:{_line_of(text, e) or where[0]}: invalid YAML: {problem}") from e
    except RecursionError:
        raise StateError(f"{path}:{where[0]}: invalid YAML: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as e:  # e.g. a timestamp that is no date
        raise StateError(f"{path}:{where[0]}: invalid YAML value: {e}") from None
    finally:
        loader.dispose()
    return docs


def _items(node: yaml.Node, obj: Any) -> Iterator[tuple[yaml.Node, Any]]:
    """:func:`_flatten` with each item's node beside it (a List item starts where its node does)."""
    if isinstance(obj, dict) and obj.get("kind") == "List" and isinstance(obj.get("items"), list):
        items = locate(node, ["items"])
        value = next((v for k, v in node.value if k is items), None) if isinstance(node, yaml.MappingNode) else None
        nodes = value.value if isinstance(value, yaml.SequenceNode) else []
        for i, item in enumerate(obj["items"]):
            yield from _items(nodes[i] if i < len(nodes) else node, item)
    else:
        yield node, obj


def _read_yaml(
    path: Path, loader: yaml.SafeLoader, docs: list[Document], where: list[int], keep_nodes: bool = False
) -> None:
    index = 0
    while loader.check_node():
        node = loader.get_node()
        index += 1
        if node is None:
            continue
        line = where[0] = node.start_mark.line + 1
        expanded, distinct = _sizes(node)
        limit = MAX_EXPANSION * distinct + EXPANSION_SLACK
        if expanded > limit:
            raise StateError(f"{path}:{line}: document {index} expands to more than {limit} nodes through YAML aliases")
        obj = loader.construct_document(node)
        if obj is None:
            continue
        for item_node, item in _items(node, obj):
            if not isinstance(item, dict):
                raise StateError(f"{path}:{line}: document {index} is not a mapping")
            item_line = item_node.start_mark.line + 1
            docs.append(Document(f"{path}:{item_line}", item, item_node if keep_nodes else None))


def _read_json(path: Path, text: str) -> list[Document]:
    """JSON state (large generated views) parses an order of magnitude faster with orjson."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise StateError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    docs = []
    for item in _flatten(obj):
        if not isinstance(item, dict):
            raise StateError(f"{path}: a document is not a mapping")
        docs.append(Document(str(path), item))
    return docs


MESH_CONFIGMAP = ("istio-system", "istio")  # V1: istiod's MeshConfig (istio-<revision> for a revision)


def mesh_of(obj: Mapping[str, Any], configmap: tuple[str, str] = MESH_CONFIGMAP) -> MeshConfig | None:
    """The MeshConfig in ConfigMap ``istio`` of istiod's namespace, when ``obj`` is that ConfigMap.
    Bad YAML is one logged error, and the MeshConfig stays unknown: never a failed review."""
    meta = obj.get("metadata")
    if obj.get("kind") != "ConfigMap" or not isinstance(meta, dict):
        return None
    if (meta.get("namespace"), meta.get("name")) != configmap:
        return None
    data = obj.get("data")
    text = data.get("mesh") if isinstance(data, dict) else None
    return mesh_from_text(text if isinstance(text, str) else "", f"ConfigMap {configmap[0]}/{configmap[1]}")


def mesh_from_text(text: str, where: str) -> MeshConfig | None:
    try:
        return parse_mesh_config(yaml.safe_load(text) or {})
    except yaml.YAMLError as e:
        log.error("%s: the MeshConfig is not YAML (%s); ServiceEntry visibility (V1) is not checked", where, e)
        return None


def read_mesh_config(path: Path) -> MeshConfig:
    """``--mesh-config FILE``: a MeshConfig, or the ConfigMap that holds one. Raises StateError."""
    docs = read_documents(path)
    for doc in docs:
        meta = doc.obj.get("metadata")
        namespace = meta.get("namespace") if isinstance(meta, dict) else None
        found = mesh_of(doc.obj, (str(namespace), "istio"))
        if found is not None:
            return found
    if len(docs) == 1 and "kind" not in docs[0].obj and "apiVersion" not in docs[0].obj:
        return parse_mesh_config(docs[0].obj)  # istiod's mesh config file itself
    raise StateError(f"{path}: neither a MeshConfig nor a ConfigMap named istio holding one")


def load_index(path: Path, index: Index | None = None) -> Index:
    """Every object of every file. A file that does not parse fails the load (StateError); an
    object whose fields have the wrong shape is skipped with one logged error, so one bad object
    never takes the others down."""
    index = index or Index()
    for file in manifest_files(path):
        for doc in read_documents(file):
            mesh = mesh_of(doc.obj)
            if mesh is not None:
                index.mesh = mesh
            try:
                index.apply(doc.obj)
            except Malformed as e:
                log.error("state: skipping the object at %s: %s", doc.source, e)
    return index


class FileView(IndexView):
    """A :class:`~webhook.core.view.ClusterView` over files, reloaded on change."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        super().__init__(Index())
        self.path = Path(path) if path is not None else None
        self._signature: tuple[tuple[str, int, int], ...] = ()
        self._stop = threading.Event()
        self.reloads = 0
        self.last_error: str | None = None
        self.reload()  # the first load raises StateError: a server must not start on bad state

    def _current_signature(self) -> tuple[tuple[str, int, int], ...]:
        if self.path is None:
            return ()
        sig = []
        for f in manifest_files(self.path):
            st = f.stat()
            sig.append((str(f), st.st_mtime_ns, st.st_size))
        return tuple(sig)

    def reload(self) -> bool:
        """Rebuild the index if the files changed; returns True when it did."""
        sig = self._current_signature()
        if sig == self._signature and self.reloads:
            return False
        index = load_index(self.path) if self.path is not None else Index()
        self.index, self._signature = index, sig  # one reference swap: readers never see half a state
        self.reloads += 1
        settle_heap()
        return True

    def poll(self) -> None:
        """One reload attempt that never raises: bad files keep the last good state."""
        try:
            if self.reload():
                self.last_error = None
                log.info("state reloaded from %s", self.path)
        except (StateError, OSError) as e:
            if str(e) != self.last_error:
                log.error("state not reloaded, keeping the previous one: %s", e)
            self.last_error = str(e)

    def start(self, interval: float = 1.0) -> threading.Thread:
        def loop() -> None:
            while not self._stop.wait(interval):
                self.poll()

        t = threading.Thread(target=loop, name="state-file-poll", daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self._stop.set()
