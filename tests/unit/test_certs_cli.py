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


def _written(out: Path) -> tuple[list[str], str]:
    import yaml

    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    server = yaml.safe_load((out / "server-patch.yaml").read_text())
    (env,) = server["spec"]["template"]["spec"]["containers"][0]["env"]
    return kustomization["resources"], env["value"]


@pytest.mark.parametrize(
    ("args", "owned", "excluded"),
    [
        (["--namespace=mesh-policy"], True, "kube-system,kube-node-lease,mesh-policy"),
        (["--namespace=mesh-policy", "--existing-namespace"], False, "kube-system,kube-node-lease"),
        (["--namespace=istio-system"], False, "kube-system,kube-node-lease"),  # shared: never owned
        (["--namespace=default"], False, "kube-system,kube-node-lease"),
    ],
)
def test_only_a_dedicated_namespace_is_created_and_excluded(
    args: list[str], owned: bool, excluded: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    main(["certs", *args, "--out", str(out)])
    resources, value = _written(out)
    assert ("namespace.yaml" in resources) is owned and (out / "namespace.yaml").exists() is owned
    assert value == excluded


def test_a_rerun_for_an_existing_namespace_drops_the_namespace_object(tmp_path: Path) -> None:
    out = tmp_path / "out"
    main(["certs", "--namespace=mesh-policy", "--out", str(out)])
    main(["certs", "--namespace=mesh-policy", "--existing-namespace", "--out", str(out)])
    resources, _ = _written(out)
    assert "namespace.yaml" not in resources and not (out / "namespace.yaml").exists()
    assert sorted(p.name for p in (out / "patches").iterdir()) == [
        "00-validatingwebhookconfiguration-waypoint-webhook.yaml",
        "01-mutatingwebhookconfiguration-waypoint-webhook.yaml",
    ]
