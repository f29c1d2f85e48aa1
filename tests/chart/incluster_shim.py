"""Test-only: start nova-operator as the chart's pod would, with the pod's own ServiceAccount token.

The local runner (tests/cluster/local_runner.py) runs pod containers as local processes and mounts
volumes in per-pod folders, rewriting mount paths only where they appear in the command line. The
kubernetes client (and kopf, through it) reads the in-cluster token and CA from a fixed path, so
this shim takes the service-account folder as its first argument (the runner rewrites it to the
pod's projected kube-api-access volume), points the in-cluster loader there, and runs
`nova-operator` with the remaining arguments. No kubeconfig fallback: without the token it fails.

    python incluster_shim.py /var/run/secrets/kubernetes.io/serviceaccount [nova-operator args...]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> int:
    sa_dir = Path(sys.argv[1])
    token, ca = sa_dir / "token", sa_dir / "ca.crt"
    if not token.is_file() or not ca.is_file():
        print(f"incluster_shim: no service-account token/CA in {sa_dir}", file=sys.stderr)
        return 3
    os.environ.pop("KUBECONFIG", None)
    from kubernetes import config
    from kubernetes.config import incluster_config

    incluster_config.SERVICE_TOKEN_FILENAME = str(token)
    incluster_config.SERVICE_CERT_FILENAME = str(ca)

    def no_kubeconfig(*_a, **_k):
        raise config.ConfigException("incluster_shim: only the pod's service account may be used")

    config.load_kube_config = no_kubeconfig
    print(f"incluster_shim: in-cluster config from {sa_dir} (namespace {(sa_dir / 'namespace').read_text()})",
          flush=True)
    from nova_operator.main import main as operator_main

    return operator_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
