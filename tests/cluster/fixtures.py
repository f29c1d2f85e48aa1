"""pytest fixtures for the real control plane (registered by the root conftest as a plugin).

- ``control_plane`` (session): builds the binaries if they are missing (skips only when there is
  no Go toolchain; a failed build is an error), starts etcd, kube-apiserver,
  kube-controller-manager, kube-scheduler and kwok with two CPU and two GPU kwok nodes, and yields
  a :class:`tests.cluster.controlplane.ControlPlane` (``kubeconfig``, ``api_url``, ``bin_dir``,
  ``kubectl()``, ``apply()``, ``api_client()``, ``pids()``, ``startup_seconds``).
- ``kube_namespace`` (per test): a fresh namespace (name as a string) with its default
  ServiceAccount present; deleted afterwards.
- ``nova_images`` (session): Nova's operator and CPU trainer images, the Debian base and pause,
  built by tests/cluster/images.sh from the repository's Dockerfiles (cached by a hash of inputs).
- ``node_runtime`` (session): containerd with those images imported (tests/cluster/node.py); its
  ``run(image, *argv)`` runs one container as uid 1000 on a read-only root.
- ``real_node`` (session): kubelet on that runtime, joined to ``control_plane`` as ``nova-node``
  (label and taint ``nova.dev/real-node=true``: ``REAL_NODE_SELECTOR`` and ``REAL_NODE_TOLERATION``);
  real pods from real images. Teardown
  undoes every host change and fails the session if anything is left.
These three skip only where a tool is really missing on the host (the reason names it and its
Debian package); a failed build or start is an error.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid

import pytest

from tests.cluster import controlplane, node

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
KWOK_EXIT_CODE_ANNOTATION = "nova.dev/kwok-exit-code"
REAL_NODE_SELECTOR = {node.NODE_LABEL: "true"}
REAL_NODE_TOLERATION = node.TOLERATION

_ns_counter = itertools.count()
_startup: list[str] = []


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    if not controlplane.binaries_present():
        if controlplane.go_toolchain() is None:
            pytest.skip("the control plane is built from Go modules and no Go toolchain (go >= 1.26) was found; "
                        "install Go or set GO=/path/to/go")
        controlplane.ensure_built(log=lambda m: print(m, flush=True))
    cp = controlplane.start(log=lambda m: _startup.append(m))
    try:
        yield cp
    finally:
        pids = cp.pids()
        cp.stop()
        left = {name: pid for name, pid in pids.items() if _alive(pid)}
        if left:
            raise AssertionError(f"control plane processes still alive after stop: {left}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture
def kube_namespace(control_plane):
    name = f"t{next(_ns_counter)}-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", name)
    deadline = time.monotonic() + 30
    while control_plane.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] != 200:
        if time.monotonic() > deadline:
            raise controlplane.ControlPlaneError(f"no default ServiceAccount in {name} after 30 s")
        time.sleep(0.05)
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def _node_tools(kubelet: bool = True) -> None:
    """Build the node's binaries when Go is there (build.sh is a no-op when they exist), else skip."""
    missing = node.missing_tools(kubelet)
    if missing and any("build.sh" in m for m in missing):
        if controlplane.go_toolchain() is None:
            pytest.skip("the real node's binaries are built from Go modules and no Go toolchain was found")
        controlplane.ensure_built(log=lambda m: print(m, flush=True), force=True)
        missing = node.missing_tools(kubelet)
    if missing:
        pytest.skip("no real node on this host; missing: " + "; ".join(missing))


@pytest.fixture(scope="session")
def nova_images():
    _node_tools(kubelet=False)
    return node.build_images(log=lambda m: _startup.append(m))


@pytest.fixture(scope="session")
def node_runtime(nova_images):
    rt = node.start_runtime(nova_images, log=lambda m: _startup.append(m))
    try:
        yield rt
    finally:
        problems = rt.stop()
        if problems:
            raise AssertionError("the real node left things behind on the host:\n" + "\n".join(problems))


@pytest.fixture(scope="session")
def real_node(control_plane, node_runtime):
    _node_tools()
    n = node.start_node(control_plane, node_runtime, log=lambda m: _startup.append(m))
    try:
        yield n
    finally:
        problems = n.stop()
        if problems:
            raise AssertionError("stopping the real node: " + "; ".join(problems))


def pytest_terminal_summary(terminalreporter):
    for line in _startup:
        terminalreporter.write_line(f"[nova control plane] {line}")
