"""Two operators with leader election on a Lease, on the real control plane: one leads, the other
stands by; SIGKILL of the leader hands over within the Lease duration plus a pass, with no second
child made; a leader cut off from the API server stops before the standby starts."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tests.operator.conftest import Operator
from tests.operator.test_operator import Cluster, run_body, wait_for
from tests.reliability.tcp_proxy import Proxy

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.reliability]
LEASE_SECONDS = 15  # nova_operator.leadership.LeaseSettings


@pytest.fixture
def cluster(kube, kube_namespace) -> Cluster:
    return Cluster(kube, kube_namespace)


@pytest.fixture
def storage_url(operator_pg, kube_namespace) -> str:
    return operator_pg.create_database(kube_namespace.replace("-", "_"))


@pytest.fixture
def pair(control_plane, kube_namespace):
    started: list[Operator] = []
    lease = f"nova-test-{uuid.uuid4().hex[:6]}"

    def start(kubeconfig: Path | None = None) -> Operator:
        op = Operator(kubeconfig or control_plane.kubeconfig, [kube_namespace],
                      {"NOVA_TRAINER_IMAGE": "nova-trainer:test", "NOVA_LEADER_ELECT": "1",
                       "POD_NAMESPACE": kube_namespace, "NOVA_LEASE_NAME": lease}).start()
        started.append(op)
        return op

    start.lease = lease  # type: ignore[attr-defined]
    yield start
    for op in started:
        op.close()


def leading(op: Operator) -> bool:
    return "leading as" in op.output()


def holder(kube, namespace: str, lease: str) -> str | None:
    return k8s.CoordinationV1Api(kube).read_namespaced_lease(lease, namespace).spec.holder_identity


def test_the_standby_takes_over_a_killed_leader_without_a_second_child(cluster, pair, kube, storage_url,
                                                                      gpu_nodes):
    cluster.secret("optuna", storage_url)
    first = pair()
    wait_for(lambda: leading(first), "the first operator leads", op=first)
    second = pair()
    # its start-up (imports) can take seconds on a loaded machine: wait for it to say it waits
    wait_for(lambda: "waiting to lead" in second.output(), "the second operator waits to lead", op=second)
    time.sleep(4)
    assert not leading(second), "two leaders"
    cluster.create_run(run_body("before", gpu={"count": 0}))
    wait_for(lambda: cluster.phase("before") == "Preparing", "the leader serves", op=first)

    killed = time.monotonic()
    first.kill()
    cluster.create_run(run_body("after", gpu={"count": 0}))
    wait_for(lambda: cluster.phase("after") == "Preparing", "the standby serves", timeout=LEASE_SECONDS + 45, op=second)
    takeover = time.monotonic() - killed
    assert leading(second)
    assert takeover <= LEASE_SECONDS + 15, f"takeover took {takeover:.1f} s"
    print(f"takeover after SIGKILL: {takeover:.1f} s (Lease {LEASE_SECONDS} s)")
    for name in ("before", "after"):
        jobs, config_maps = cluster.children(name)
        assert len(jobs) == 1 and len(config_maps) == 1, (name, jobs, config_maps)


def test_a_leader_cut_off_from_the_api_server_stops_before_the_standby_leads(control_plane, cluster, pair, kube,
                                                                            kube_namespace, tmp_path):
    server = yaml.safe_load(control_plane.kubeconfig.read_text())
    api_port = int(re.search(r":(\d+)$", server["clusters"][0]["cluster"]["server"]).group(1))
    proxy = Proxy(api_port)
    proxy.open()
    proxy.up()
    cut_config = tmp_path / "kubeconfig"
    server["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    cut_config.write_text(yaml.safe_dump(server))
    try:
        first = pair(cut_config)
        wait_for(lambda: leading(first), "the first operator leads", op=first)
        second = pair()
        wait_for(lambda: "waiting to lead" in second.output(), "the standby waits", op=second)
        proxy.partition()
        cut = time.monotonic()
        wait_for(lambda: first.proc.poll() is not None, "the cut-off leader exits", timeout=LEASE_SECONDS + 10,
                 op=first)
        stopped = time.monotonic() - cut
        wait_for(lambda: leading(second), "the standby leads", timeout=LEASE_SECONDS + 30, op=second)
        led = time.monotonic() - cut
        assert "lost the Lease" in first.output()
        assert stopped < led, f"the old leader stopped {stopped:.1f} s after the cut, the new one led at {led:.1f} s"
        assert holder(kube, kube_namespace, pair.lease) != "" and leading(second)
        print(f"partition: old leader stopped at {stopped:.1f} s, standby led at {led:.1f} s")
    finally:
        proxy.close()


def test_a_clean_stop_hands_the_lease_over_at_once(cluster, pair, kube, kube_namespace):
    first = pair()
    wait_for(lambda: leading(first), "the first operator leads", op=first)
    second = pair()
    wait_for(lambda: "waiting to lead" in second.output(), "the standby waits", op=second)
    stopped = time.monotonic()
    first.stop()  # SIGINT, as kubelet's SIGTERM: kopf stops, the Lease is released
    wait_for(lambda: leading(second), "the standby leads", timeout=LEASE_SECONDS, op=second)
    assert time.monotonic() - stopped < LEASE_SECONDS, "the Lease was not released"
    assert "released the Lease" in first.output()
