"""``certs --namespace`` (``make certs NAMESPACE=…``) refuses a namespace Kubernetes could never create,
before writing a certificate for a Service name that cannot exist (issue 19, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.cli.commands import main


@pytest.mark.parametrize("bad", ["Bad_NS", "-lead", "trail-", "a.b", "x" * 64, ""])
def test_an_impossible_namespace_is_refused_and_nothing_is_written(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit:
        main(["certs", f"--namespace={bad}", "--out", str(out)])
    assert exit.value.code == 2
    assert "is not a namespace name" in capsys.readouterr().err
    assert not out.exists()


def test_a_valid_namespace_passes_the_check(tmp_path: Path) -> None:
    from webhook.cli.parser import namespace_name

    assert namespace_name("mesh-policy") == "mesh-policy"
    assert namespace_name("a" * 63) == "a" * 63
