"""Where the API server's client configuration comes from, for every command that talks to a cluster."""

from __future__ import annotations

from typing import Any

from kubernetes import client, config


def client_configuration(kubeconfig: str | None) -> Any:
    """``--kubeconfig`` if given; else the in-cluster configuration; else $KUBECONFIG or ~/.kube/config.

    Raises :class:`ValueError` naming what was tried, so ``serve`` can refuse to start with one
    line instead of letting every worker fail to boot."""
    cfg = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
            return cfg
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException as in_cluster:
            try:
                config.load_kube_config(client_configuration=cfg)
            except (config.ConfigException, OSError) as e:
                raise ValueError(f"no in-cluster configuration ({in_cluster}) and no kubeconfig ({e})") from None
    except (config.ConfigException, OSError) as e:
        raise ValueError(f"cannot load kubeconfig {kubeconfig}: {e}") from None
    return cfg
