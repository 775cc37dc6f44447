"""The e2e harness never leaks kube-apiserver or etcd: not when start-up fails part way, not when
set-up after start fails, and not when the test process itself is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from testkit.controlplane import ControlPlane, alive
from testkit.harness import ROOT, Kubectl, running_cluster, wait_until

pytestmark = pytest.mark.e2e


def _pids_under(workdir: Path) -> list[int]:
    """Processes whose command line names ``workdir`` (etcd's data dir, kube-apiserver's certs)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if str(workdir) in (d / "cmdline").read_bytes().decode(errors="replace") and alive(int(d.name)):
                    out.append(int(d.name))
            except OSError:
                continue
    return out


def test_apiserver_failing_to_start_stops_etcd(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path, apiserver_args=["--no-such-flag-for-this-test"])
    with pytest.raises(RuntimeError, match="apiserver exited"):
        cp.start()
    assert len(cp.pids) == 2, "etcd and kube-apiserver were both started"
    assert not [p for p in cp.pids if alive(p)]
    assert not _pids_under(tmp_path)


def test_setup_failing_after_start_stops_the_control_plane(tmp_path: Path) -> None:
    running: list[int] = []

    def broken_setup(kubectl: Kubectl) -> None:
        kubectl("get", "namespaces")  # the control plane is really up
        running.extend(_pids_under(tmp_path))
        raise RuntimeError("CRD install failed")

    with pytest.raises(RuntimeError, match="CRD install failed"), running_cluster(tmp_path, setup=broken_setup):
        pass
    assert len(running) == 2
    assert not [p for p in running if alive(p)]


def test_killed_test_process_takes_its_control_plane_with_it(tmp_path: Path) -> None:
    """No ``finally`` runs on SIGKILL: the children die through PR_SET_PDEATHSIG."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from testkit.controlplane import ControlPlane
        cp = ControlPlane(Path({str(tmp_path)!r}))
        cp.start()
        print(" ".join(str(p) for p in cp.pids), flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert parent.stdout is not None
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(alive(p) for p in pids)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    wait_until(lambda: not [p for p in pids if alive(p)], 15, "etcd and kube-apiserver to die with their parent")
    assert not _pids_under(tmp_path)
