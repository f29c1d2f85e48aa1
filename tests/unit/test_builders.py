"""The children of a run, field by field, without a cluster."""

from __future__ import annotations

import json

import pytest

from nova.spec import ResolvedRun, SecretRef, TrainingRunSpec
from nova_operator import builders as b

OWNER = b.owner_reference("r1", "uid-123")
CFG = b.OperatorConfig(trainer_image="registry.local/nova-trainer:test")
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                   "projected", "secret"}


def run(**spec) -> ResolvedRun:
    base = {"data": {"symbols": ["AAPL", "MSFT"]},
            "tuning": {"trials": 20, "workers": 3, "storage": {"secretRef": {"name": "optuna-db", "key": "url"}}}}
    for key, value in spec.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return ResolvedRun(name="r1", namespace="team-a", generation=4, spec=TrainingRunSpec.model_validate(base))


def restricted_violations(pod: dict) -> list[str]:
    """The Kubernetes "restricted" Pod Security Standard (v1.36), checked rule by rule."""
    bad = []
    psc = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            bad.append(flag)
    for vol in pod.get("volumes", []):
        kinds = set(vol) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            bad.append(f"volume {vol['name']}: {kinds}")
    if psc.get("runAsUser") == 0:
        bad.append("pod runAsUser 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation not false")
        if not (sc.get("runAsNonRoot") or (psc.get("runAsNonRoot") and sc.get("runAsNonRoot") is not False)):
            bad.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser") == 0:
            bad.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccomp {seccomp}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in caps.get("drop", []):
            bad.append(f"{name}: capabilities not dropped")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: capabilities added")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                bad.append(f"{name}: hostPort")
    return bad


def test_config_map_holds_the_resolved_run_and_no_secret():
    r = run()
    cm = b.config_map(r, OWNER)
    assert cm["metadata"]["name"] == "r1-config" and cm["metadata"]["namespace"] == "team-a"
    assert cm["metadata"]["ownerReferences"] == [OWNER]
    assert ResolvedRun.from_json(cm["data"]["run.json"]) == r
    assert "secretRef" in cm["data"]["run.json"] and "password" not in cm["data"]["run.json"]
    assert cm["metadata"]["annotations"][b.GENERATION_ANNOTATION] == "4"


def test_owner_reference_makes_the_run_the_controller():
    assert OWNER == {"apiVersion": "nova.dev/v1alpha1", "kind": "TrainingRun", "name": "r1", "uid": "uid-123",
                     "controller": True, "blockOwnerDeletion": True}


def test_worker_job_is_indexed_with_one_pod_per_worker():
    job = b.worker_job(run(), OWNER, CFG)
    spec = job["spec"]
    assert job["metadata"]["name"] == "r1-workers" and job["metadata"]["ownerReferences"] == [OWNER]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 3
    assert spec["backoffLimitPerIndex"] == CFG.backoff_limit_per_index and "backoffLimit" not in spec
    assert spec["suspend"] is False
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # required by backoffLimitPerIndex and podFailurePolicy
    assert job["metadata"]["labels"][b.RUN_LABEL] == "r1"
    assert spec["template"]["metadata"]["labels"][b.COMPONENT_LABEL] == "worker"
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert rules[1]["action"] == "FailIndex" and rules[1]["onExitCodes"]["containerName"] == "trainer"


def test_prep_is_a_native_sidecar_sharing_features_with_the_trainer():
    pod = b.worker_job(run(), OWNER, CFG)["spec"]["template"]["spec"]
    (prep,) = pod["initContainers"]
    (trainer,) = pod["containers"]
    assert prep["name"] == "prep" and prep["restartPolicy"] == "Always"
    assert prep["command"] == ["nova-trainer"]
    assert prep["args"] == ["prep", "--config", "/etc/nova/run.json", "--out", "/work/features", "--linger"]
    assert trainer["name"] == "trainer" and "restartPolicy" not in trainer
    assert trainer["args"] == ["tune", "--config", "/etc/nova/run.json", "--shards", "/work/features"]
    for c in (prep, trainer):
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert mounts["/work/features"] == "features" and mounts["/tmp"] == "tmp" and mounts["/work"] == "work"
        assert mounts["/etc/nova"] == "config"
        assert c["image"] == "registry.local/nova-trainer:test"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["features"] == {"name": "features", "emptyDir": {}}
    assert volumes["config"]["configMap"] == {"name": "r1-config"}


def test_pods_pass_the_restricted_pod_security_standard():
    for job in (b.worker_job(run(), OWNER, CFG), b.refit_job(run(), OWNER, CFG)):
        pod = job["spec"]["template"]["spec"]
        assert restricted_violations(pod) == []
        assert pod["automountServiceAccountToken"] is False
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["runAsUser"] == 1000
            writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
            assert {"/tmp", "/work"} <= writable


def test_the_restricted_checker_catches_violations():
    pod = b.worker_job(run(), OWNER, CFG)["spec"]["template"]["spec"]
    pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    pod["initContainers"][0]["securityContext"]["capabilities"] = {"add": ["SYS_ADMIN"], "drop": ["ALL"]}
    pod["volumes"].append({"name": "h", "hostPath": {"path": "/"}})
    pod["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
    pod["containers"][0]["securityContext"].pop("seccompProfile")
    found = restricted_violations(pod)
    assert any("allowPrivilegeEscalation" in v for v in found)
    assert any("capabilities added" in v for v in found)
    assert any("hostPath" in v for v in found)
    assert any("seccomp Unconfined" in v for v in found)


def test_gpu_limits_and_tolerations():
    r = run(gpu={"count": 2, "resourceName": "nvidia.com/gpu"},
            scheduling={"nodeSelector": {"nova.dev/gpu": "h200"},
                        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml",
                                         "effect": "NoSchedule"}],
                        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [
                                {"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
                        "priorityClassName": "ml-batch", "serviceAccountName": "trainer"})
    pod = b.worker_job(r, OWNER, CFG)["spec"]["template"]["spec"]
    trainer = pod["containers"][0]
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert trainer["resources"]["limits"]["memory"] == "16Gi"
    assert trainer["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}
    assert "nvidia.com/gpu" not in pod["initContainers"][0]["resources"].get("limits", {})  # prep is CPU
    assert pod["nodeSelector"] == {"nova.dev/gpu": "h200"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert pod["priorityClassName"] == "ml-batch" and pod["serviceAccountName"] == "trainer"
    env = {e["name"]: e.get("value") for e in trainer["env"]}
    assert env["NOVA_RMM_ENABLED"] == "true" and env["NOVA_RMM_INITIAL_POOL_SIZE"] == "8Gi"
    assert env["NOVA_RMM_MAXIMUM_POOL_SIZE"] == "14Gi" and env["NOVA_DEVICE"] == "auto"


def test_cpu_run_asks_for_no_gpu_and_adds_no_gpu_toleration():
    pod = b.worker_job(run(gpu={"count": 0}), OWNER, CFG)["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"].get("limits", {})
    assert "tolerations" not in pod and "nodeSelector" not in pod and "affinity" not in pod
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["NOVA_RMM_ENABLED"] == "false"


def test_secrets_only_by_reference():
    r = run(data={"symbols": ["AAPL"], "source": "postgres", "table": "bars",
                  "secretRef": {"name": "market-db", "key": "dsn"}})
    for job in (b.worker_job(r, OWNER, CFG), b.refit_job(r, OWNER, CFG)):
        pod = job["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            env = {e["name"]: e for e in c["env"]}
            assert env["NOVA_STORAGE_URL"] == {"name": "NOVA_STORAGE_URL", "valueFrom": {
                "secretKeyRef": {"name": "optuna-db", "key": "url"}}}
            assert env["NOVA_DATA_URL"]["valueFrom"]["secretKeyRef"] == {"name": "market-db", "key": "dsn"}
            assert all("value" not in e for e in env.values() if e["name"].endswith("_URL"))
    text = json.dumps(b.worker_job(r, OWNER, CFG))
    assert "postgresql" not in text
    assert b.required_secrets(r, CFG) == [("spec.tuning.storage.secretRef", SecretRef(name="optuna-db", key="url")),
                                          ("spec.data.secretRef", SecretRef(name="market-db", key="dsn"))]


def test_default_storage_secret_from_the_operator_config():
    cfg = b.OperatorConfig.from_env({"NOVA_DEFAULT_STORAGE_SECRET": "nova-storage/uri", "NOVA_TRAINER_IMAGE": "x:1"})
    r = run(tuning={"storage": {}})
    assert cfg.trainer_image == "x:1"
    assert b.storage_secret(r, cfg) == SecretRef(name="nova-storage", key="uri")
    assert b.storage_secret(r, b.OperatorConfig()) is None


def test_suspend_and_image_override():
    job = b.worker_job(run(suspend=True, image="mine/trainer:2"), OWNER, CFG)
    assert job["spec"]["suspend"] is True
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "mine/trainer:2"
    assert b.suspend_patch(False) == {"spec": {"suspend": False}}
    assert b.scale_patch(run(tuning={"workers": 5})) == {"spec": {"completions": 5, "parallelism": 5}}


@pytest.mark.parametrize("claim, kind", [(None, "emptyDir"), ("models", "persistentVolumeClaim")])
def test_refit_job_writes_the_model_to_the_output_volume(claim, kind):
    cfg = b.OperatorConfig(trainer_image="t:1", output_claim=claim)
    job = b.refit_job(run(), OWNER, cfg)
    assert job["metadata"]["name"] == "r1-refit" and job["metadata"]["ownerReferences"] == [OWNER]
    assert job["spec"]["completions"] == 1 and job["spec"]["backoffLimit"] == cfg.refit_backoff_limit
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"][:2] == ["sh", "-c"] and "nova-trainer refit" in c["command"][2]
    assert c["command"][3:] == ["/etc/nova/run.json", "/output/team-a/r1", "/dev/termination-log"]
    assert c["terminationMessagePath"] == "/dev/termination-log"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/output/team-a/r1"] == "output"
    output = next(v for v in pod["volumes"] if v["name"] == "output")
    assert kind in output
    mount = next(m for m in c["volumeMounts"] if m["name"] == "output")
    serving = {e["name"]: e.get("value") for e in c["env"]}.get("NOVA_OUTPUT_SERVING_URI")
    assert serving == ("pvc://models/team-a/r1" if claim else None)
    if claim:
        assert output["persistentVolumeClaim"] == {"claimName": "models"}
        assert mount["subPath"] == "team-a/r1", "runs share the claim: each must write in its own folder"
    else:
        assert "subPath" not in mount


def test_refit_to_a_remote_uri_mounts_nothing():
    pod = b.refit_job(run(output={"uri": "s3://bucket/models"}), OWNER, CFG)["spec"]["template"]["spec"]
    assert all(v["name"] != "output" for v in pod["volumes"])
    (c,) = pod["containers"]
    # the refit's own summary goes to the writable /work; the models to the run's prefix (run.json)
    assert c["command"][3:] == ["/etc/nova/run.json", "/work/output", "/dev/termination-log"]
    assert b.output_dir(run(output={"uri": "s3://bucket/models/"})) == "s3://bucket/models/team-a/r1"


def _env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def test_object_store_credentials_reach_the_pods_only_as_secret_references():
    r = run(data={"source": "file", "uri": "s3://bars/daily/", "objectStore": {
                "endpoint": "http://minio.storage:9000", "credentialsSecret": "bars-creds"}},
            output={"uri": "s3://models/nova", "objectStore": {"credentialsSecret": "model-creds"}})
    workers = b.worker_job(r, OWNER, CFG)["spec"]["template"]["spec"]
    refit = b.refit_job(r, OWNER, CFG)["spec"]["template"]["spec"]
    for c in [*workers["initContainers"], *workers["containers"], *refit["containers"]]:
        env = _env_of(c)
        for role, secret in (("DATA", "bars-creds"), ("OUTPUT", "model-creds")):
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
                ref = env[f"NOVA_{role}_{key}"]
                assert "value" not in ref and ref["valueFrom"]["secretKeyRef"]["name"] == secret
                assert ref["valueFrom"]["secretKeyRef"]["key"] == key
                assert ref["valueFrom"]["secretKeyRef"].get("optional", False) == (key == "AWS_SESSION_TOKEN")
    needed = {(src, ref.name, ref.key) for src, ref in b.required_secrets(r, CFG)}
    assert ("spec.data.objectStore.credentialsSecret", "bars-creds", "AWS_SECRET_ACCESS_KEY") in needed
    assert ("spec.output.objectStore.credentialsSecret", "model-creds", "AWS_ACCESS_KEY_ID") in needed
    assert not any(ref.key == "AWS_SESSION_TOKEN" for _, ref in b.required_secrets(r, CFG))
    cm = json.dumps(b.config_map(r, OWNER))
    assert "bars-creds" in cm and "AWS_SECRET_ACCESS_KEY" not in cm  # the name travels, never a key


def test_a_credentials_secret_with_a_local_uri_is_not_asked_for():
    r = run(output={"uri": "/models", "objectStore": {"credentialsSecret": "unused"}})
    assert all(ref.name != "unused" for _, ref in b.required_secrets(r, CFG))
    assert not any(e["name"].startswith("NOVA_OUTPUT_") for e in b.refit_job(r, OWNER, CFG)["spec"]["template"][
        "spec"]["containers"][0]["env"])


def test_data_claim_is_mounted_read_only_in_every_pod_that_reads_bars():
    r = run(data={"source": "file", "uri": "bars/daily", "claimName": "market-data"})
    workers = b.worker_job(r, OWNER, CFG)["spec"]["template"]["spec"]
    refit = b.refit_job(r, OWNER, CFG)["spec"]["template"]["spec"]
    for pod in (workers, refit):
        vol = next(v for v in pod["volumes"] if v["name"] == "data")
        assert vol["persistentVolumeClaim"] == {"claimName": "market-data", "readOnly": True}
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            mount = next(m for m in c["volumeMounts"] if m["name"] == "data")
            assert mount == {"name": "data", "mountPath": "/data", "readOnly": True}
            assert _env_of(c)["NOVA_DATA_ROOT"]["value"] == "/data"
        assert not restricted_violations(pod)
    plain = b.worker_job(run(), OWNER, CFG)["spec"]["template"]["spec"]
    assert all(v["name"] != "data" for v in plain["volumes"])


# ------------------------------------------------------------------------------------- Kueue
def test_no_queue_no_kueue_label_and_the_job_follows_spec_suspend():
    job = b.worker_job(run(), OWNER, CFG)
    assert b.QUEUE_LABEL not in job["metadata"]["labels"] and b.QUEUE_ANNOTATION not in job["metadata"]["annotations"]
    assert job["spec"]["suspend"] is False
    assert b.QUEUE_LABEL not in b.refit_job(run(), OWNER, CFG)["metadata"]["labels"]


def test_spec_queue_name_labels_both_jobs_which_start_suspended_for_kueue():
    r = run(queueName="team-a-gpus")
    for job in (b.worker_job(r, OWNER, CFG), b.refit_job(r, OWNER, CFG)):
        assert job["metadata"]["labels"][b.QUEUE_LABEL] == "team-a-gpus"
        assert job["metadata"]["annotations"][b.QUEUE_ANNOTATION] == "team-a-gpus"
        assert job["spec"]["suspend"] is True  # Kueue unsuspends it when it admits the Workload
        # the label is the Job's, not the pods': Kueue reads the Job
        assert b.QUEUE_LABEL not in job["spec"]["template"]["metadata"]["labels"]


def test_the_operators_default_queue_applies_when_the_run_names_none():
    cfg = b.OperatorConfig.from_env({"NOVA_DEFAULT_QUEUE": "shared"})
    assert cfg.default_queue == "shared"
    assert b.worker_job(run(), OWNER, cfg)["metadata"]["labels"][b.QUEUE_LABEL] == "shared"
    own = b.worker_job(run(queueName="mine"), OWNER, cfg)
    assert own["metadata"]["labels"][b.QUEUE_LABEL] == "mine"
    assert b.OperatorConfig.from_env({"NOVA_DEFAULT_QUEUE": ""}).default_queue is None


def test_a_user_suspended_run_gets_its_job_unreleased_so_kueue_cannot_start_it():
    job = b.worker_job(run(queueName="q", suspend=True), OWNER, CFG)
    assert job["spec"]["suspend"] is True
    assert b.QUEUE_LABEL not in job["metadata"]["labels"]  # released (labelled) on resume
    assert job["metadata"]["annotations"][b.QUEUE_ANNOTATION] == "q"


def test_a_workload_priority_class_labels_the_queued_jobs_for_kueue():
    r = run(queueName="q", scheduling={"workloadPriorityClassName": "prod"})
    for job in (b.worker_job(r, OWNER, CFG), b.refit_job(r, OWNER, CFG)):
        assert job["metadata"]["labels"][b.PRIORITY_LABEL] == "prod"
        assert "priorityClassName" not in job["spec"]["template"]["spec"]  # the pods' own priority is untouched
    assert b.PRIORITY_LABEL not in b.worker_job(run(scheduling={"workloadPriorityClassName": "prod"}), OWNER,
                                                CFG)["metadata"]["labels"]  # no queue: Kueue's label means nothing


def _cpu_env(container: dict) -> dict | None:
    return next((e for e in container["env"] if e["name"] == "NOVA_CPUS"), None)


def test_each_container_sizes_its_threads_by_its_own_cpu_request():
    """Prep and the trainer each get $NOVA_CPUS from their own container's CPU (Downward API, whole
    cores), so neither takes the node's every core and starves the other (issue 19)."""
    pod = b.worker_job(run(), OWNER, CFG)["spec"]["template"]["spec"]
    (prep,), (trainer,) = pod["initContainers"], pod["containers"]
    assert prep["resources"]["requests"]["cpu"] == "1" and trainer["resources"]["requests"]["cpu"] == "2"
    for c in (prep, trainer):
        assert _cpu_env(c) == {"name": "NOVA_CPUS", "valueFrom": {"resourceFieldRef": {
            "resource": "requests.cpu", "divisor": "1"}}}
        assert "limits" not in c["resources"] or "cpu" not in c["resources"]["limits"]


def test_a_cpu_limit_sizes_the_threads_and_no_cpu_leaves_it_to_the_cgroup():
    spec = run(resources={"trainer": {"requests": {"cpu": "3"}, "limits": {"cpu": "3500m", "memory": "8Gi"}},
                          "prep": {"requests": {"memory": "1Gi"}}})
    pod = b.worker_job(spec, OWNER, CFG)["spec"]["template"]["spec"]
    (prep,), (trainer,) = pod["initContainers"], pod["containers"]
    assert trainer["resources"]["limits"]["cpu"] == "3500m"
    assert _cpu_env(trainer)["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    assert _cpu_env(prep) is None  # no CPU asked for: the process reads its cgroup quota, else its CPUs
    refit = b.refit_job(spec, OWNER, CFG)["spec"]["template"]["spec"]["containers"][0]
    assert _cpu_env(refit)["valueFrom"]["resourceFieldRef"] == {"resource": "limits.cpu", "divisor": "1"}
