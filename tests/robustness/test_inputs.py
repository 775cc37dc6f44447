"""``check`` and ``--state`` on hostile files: random YAML never gives a traceback or an exit
status other than 0, 1, 2; alias bombs and oversized documents are refused quickly with file and
line, memory stays bounded; a refused reload never stops later reloads; a malformed object in the
state is skipped with one logged error."""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.robustness.strategies import SEEDS, YAML, mutated
from webhook.cli.commands import main
from webhook.cluster.files import FileView, StateError, read_documents

# Pieces of YAML syntax, so random text reaches the parser's corners rather than plain scalars.
PIECES = st.sampled_from(
    [
        *"ab:- \n\t{}[],&*!|>'\"#%@`?~0123456789\x00\x85\ufeff",
        "kind: List\n",
        "items:\n",
        "apiVersion: v1\n",
        "kind: Namespace\n",
        "metadata:\n  name: ",
        "---\n",
        "!!binary ",
        "&x ",
        "*x",
        "<<: ",
    ]
)


def _check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``check -f`` on ``text``: its exit status and everything it printed."""
    f = tmp_path / "input.yaml"
    f.write_text(text, encoding="utf-8")
    code = main(["check", "-f", str(f)])
    out = capsys.readouterr()
    return code, out.out + out.err


@given(st.lists(PIECES, max_size=60).map("".join))
def test_random_text_gives_an_answer_or_a_located_error(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    tmp = tmp_path_factory.mktemp("check")
    f = tmp / "input.yaml"
    f.write_text(text, encoding="utf-8")
    try:
        code = main(["check", "-f", str(f)])
    except SystemExit as e:  # argparse or configuration: never for file contents
        raise AssertionError(f"exit {e.code} for {text!r}") from None
    assert code in (0, 1, 2)


@given(st.lists(mutated(values=YAML) | YAML, min_size=1, max_size=3))
def test_random_documents_give_an_answer_or_a_located_error(
    tmp_path_factory: pytest.TempPathFactory, docs: list[object]
) -> None:
    tmp = tmp_path_factory.mktemp("check")
    f = tmp / "input.yaml"
    f.write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    assert main(["check", "-f", str(f)]) in (0, 1, 2)


def _bomb(levels: int = 8, width: int = 10) -> str:
    lines = ["a0: &a0 {apiVersion: v1, kind: Namespace, metadata: {name: x}}"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} {{kind: List, items: [{', '.join([f'*a{i - 1}'] * width)}]}}")
    return "\n".join([*lines, "kind: List", f"items: [*a{levels}]"]) + "\n"


def test_alias_bomb_is_refused_quickly_with_bounded_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.monotonic()
    code, out = _check(tmp_path, _bomb(), capsys)
    assert code == 2 and "input.yaml:1" in out and "YAML aliases" in out, out
    assert time.monotonic() - t < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KiB


def test_small_files_may_still_use_anchors() -> None:
    text = (
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: v1, kind: Namespace, metadata: {name: a, labels: &labels {istio.io/dataplane-mode: ambient}}}\n"
        "- {apiVersion: v1, kind: Namespace, metadata: {name: b, labels: *labels}}\n"
    )
    docs = read_documents(Path("x.yaml"), text)
    assert [d.obj["metadata"]["labels"]["istio.io/dataplane-mode"] for d in docs] == ["ambient", "ambient"]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("kind: Namespace\nmetadata:\n  name: a\x00b\n", "x.yaml:3"),
        ("a: 2001-13-45\n", "x.yaml:1"),
        ("[" * 5000 + "]" * 5000, "x.yaml:1"),
        ("a: [1, 2\nb: 3\n", "x.yaml:2"),
    ],
)
def test_unusable_yaml_names_file_and_line(text: str, where: str) -> None:
    with pytest.raises(StateError, match=where):
        read_documents(Path("x.yaml"), text)


def test_refused_reload_keeps_state_and_later_edits_still_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "a.yaml").write_text(yaml.safe_dump(SEEDS[0]))
    view = FileView(state)
    assert view.gateway("default", "waypoint") is not None
    for broken in (_bomb(), "kind: [\n"):
        (state / "b.yaml").write_text(broken)
        view.poll()
        assert view.last_error and view.gateway("default", "waypoint") is not None
    (state / "b.yaml").write_text(yaml.safe_dump(SEEDS[1]))
    view.poll()
    assert view.last_error is None and view.gateway("infra", "shared") is not None


def test_malformed_state_object_is_skipped_with_one_logged_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = {**SEEDS[1], "spec": {**SEEDS[1]["spec"], "listeners": "not a list"}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump_all([SEEDS[0], bad]))
    with caplog.at_level(logging.ERROR):
        view = FileView(tmp_path / "s.yaml")
    assert view.gateway("default", "waypoint") is not None and view.gateway("infra", "shared") is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "s.yaml:" in errors[0].getMessage() and "spec.listeners" in errors[0].getMessage()
