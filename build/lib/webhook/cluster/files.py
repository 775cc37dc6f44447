"""Cluster view from YAML files: the embedded default for ``make run`` and the test fixture.

``PATH`` is a file or a directory of multi-document YAML (``.yaml``, ``.yml``, ``.json``); a
``kind: List`` is flattened. The view reloads when a file's size or mtime changes, keeping the
last good state when the new one is unreadable, so editing a file never takes the server down.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from webhook.core.index import Index, IndexView, settle_heap
from webhook.core.model import Malformed

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
    source: str  # "file.yaml#3 (line 12)" style location, for messages
    obj: dict[str, Any]


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


def read_documents(path: Path, text: str | None = None) -> list[Document]:
    """Parse one file into documents, with errors that name the file and line.

    Bounded: files over ``MAX_FILE_BYTES``, and documents whose aliases expand them more than
    ``MAX_EXPANSION`` times, are refused before anything walks them."""
    text = _read_text(path, text)
    if path.suffix == ".json":
        return _read_json(path, text)
    docs: list[Document] = []
    loader = _Loader(text)
    where = [0]  # the line of the document being read, for errors
    try:
        _read_yaml(path, loader, docs, where)
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


def _read_yaml(path: Path, loader: yaml.SafeLoader, docs: list[Document], where: list[int]) -> None:
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
        for item in _flatten(obj):
            if not isinstance(item, dict):
                raise StateError(f"{path}:{line}: document {index} is not a mapping")
            docs.append(Document(f"{path}:{line}", item))


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


def load_index(path: Path, index: Index | None = None) -> Index:
    """Every object of every file. A file that does not parse fails the load (StateError); an
    object whose fields have the wrong shape is skipped with one logged error, so one bad object
    never takes the others down."""
    index = index or Index()
    for file in manifest_files(path):
        for doc in read_documents(file):
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
