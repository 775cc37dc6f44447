"""The file-backed cluster view: formats, unknown namespaces, reload on change (issue 2 item 3)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from webhook.cluster.files import FileView, StateError

GW = """apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: %s, namespace: default}
spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
status: {addresses: [{value: 10.0.0.1}]}
"""


def bump(p: Path, text: str) -> None:
    p.write_text(text)
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_directory_of_multidoc_yaml_and_lists(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GW % "one" + "---\n" + GW % "two")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "list.yml").write_text(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: n1, labels: {a: b}}\n"
    )
    (tmp_path / "ignored.txt").write_text("not yaml: [")
    v = FileView(tmp_path)
    assert v.gateway("default", "one") and v.gateway("default", "two") and v.gateway("default", "three") is None
    one = v.gateway("default", "one")
    assert one is not None and one.ready
    assert v.namespace_labels("n1") == {"a": "b", "kubernetes.io/metadata.name": "n1"}


def test_unlisted_namespace_has_only_its_name_label(tmp_path: Path) -> None:
    v = FileView(tmp_path)
    assert v.namespace_labels("anything") == {"kubernetes.io/metadata.name": "anything"}


def test_changes_are_picked_up_and_bad_edits_keep_the_last_good_state(tmp_path: Path) -> None:
    f = tmp_path / "state.yaml"
    f.write_text(GW % "one")
    v = FileView(tmp_path)
    assert v.gateway("default", "one")
    bump(f, GW % "renamed")
    v.poll()
    assert v.gateway("default", "renamed") and v.gateway("default", "one") is None
    bump(f, "kind: [broken\n")
    v.poll()
    assert v.gateway("default", "renamed") and v.last_error and "state.yaml:" in v.last_error


def test_consumers_index_follows_reloads(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: s%d, namespace: default, labels: {istio.io/use-waypoint: one}}\n"
    f.write_text(GW % "one" + "---\n" + svc % 1)
    v = FileView(tmp_path)
    assert [r.name for r in v.consumers_of("default", "one")] == ["s1"]
    bump(f, GW % "one" + "---\n" + svc % 1 + "---\n" + svc % 2)
    v.poll()
    assert sorted(r.name for r in v.consumers_of("default", "one")) == ["s1", "s2"]


def test_first_load_errors_name_the_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A malformed object is skipped with one logged error naming file, line and field...
    (tmp_path / "x.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: n, labels: [1]}\n")
    FileView(tmp_path)
    assert any("x.yaml:1: metadata.labels" in r.getMessage() for r in caplog.records)
    # ...while a file that does not parse, or no file at all, stops the first load.
    (tmp_path / "x.yaml").write_text("apiVersion: v1\nkind: [\n")
    with pytest.raises(StateError, match=r"x.yaml:\d+: invalid YAML"):
        FileView(tmp_path)
    with pytest.raises(StateError, match="no such file"):
        FileView(tmp_path / "missing")


def test_json_state_and_json_errors(tmp_path: Path) -> None:
    import orjson

    items = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"n{i}", "labels": {"x": "y"}}} for i in range(3)
    ]
    (tmp_path / "s.json").write_bytes(orjson.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    v = FileView(tmp_path)
    assert v.namespace_labels("n2")["x"] == "y"
    (tmp_path / "s.json").write_text('{"kind": "List",\n "items": [}')
    with pytest.raises(StateError, match=r"s.json:2: invalid JSON"):
        FileView(tmp_path)
