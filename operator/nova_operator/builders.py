"""Manifests of a run's children, as pure functions: spec in, manifest out.

Nothing here talks to the API, so every field of every child is unit-tested without a cluster, and
the handlers only create what these functions return. The pods follow the Kubernetes "restricted"
Pod Security Standard; the storage and data URLs reach them only as Secret references."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from nova import object_store
from nova.cpus import CPUS_ENV, cpu_source
from nova.spec import API_GROUP, API_VERSION, KIND, ContainerResources, ResolvedRun, SecretRef

CONFIG_DIR = "/etc/nova"
RUN_JSON = f"{CONFIG_DIR}/run.json"
FEATURES_DIR = "/work/features"
DEFAULT_OUTPUT_ROOT = "/output"
RESULT_PATH = "/dev/termination-log"
REMOTE_WORK_DIR = "/work/output"
DATA_CLAIM_DIR = "/data"  # where data.claimName is mounted (read-only); data.uri is relative to it
DATA_ROOT_ENV = "NOVA_DATA_ROOT"  # the refit's own files (summary.json) when the models go to a store
STORAGE_URL_ENV = "NOVA_STORAGE_URL"
DATA_URL_ENV = "NOVA_DATA_URL"
RUN_LABEL = f"{API_GROUP}/run"
COMPONENT_LABEL = "app.kubernetes.io/component"
GENERATION_ANNOTATION = f"{API_GROUP}/generation"
# Kueue's label: a Job that carries it waits in that LocalQueue until Kueue admits (unsuspends) it.
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# The queue Nova means for a Job. The label follows it once Nova releases the Job to Kueue: a run
# suspended by its user gets its Job without the label, so Kueue cannot admit (start) it meanwhile.
QUEUE_ANNOTATION = f"{API_GROUP}/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"  # a Kueue WorkloadPriorityClass
USER_ID = 1000


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator's deployment decides for every run (from flags and env)."""

    trainer_image: str = "ghcr.io/nova-dev/nova-trainer:latest"
    image_pull_policy: str = "IfNotPresent"
    backoff_limit_per_index: int = 2  # retries of one worker index; failures past it fail the run
    refit_backoff_limit: int = 1
    output_claim: str | None = None  # PVC mounted where the refit writes the model
    default_storage_secret: SecretRef | None = None  # used when a run names no storage Secret
    termination_grace_seconds: int = 60  # the trainer re-queues its trial on SIGTERM
    extra_labels: dict[str, str] = field(default_factory=dict)
    default_queue: str | None = None  # Kueue LocalQueue for runs that name none (spec.queueName)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorConfig:
        env = dict(os.environ if env is None else env)
        secret = None
        if env.get("NOVA_DEFAULT_STORAGE_SECRET"):
            name, _, key = env["NOVA_DEFAULT_STORAGE_SECRET"].partition("/")
            secret = SecretRef(name=name, key=key or "url")
        return cls(
            trainer_image=env.get("NOVA_TRAINER_IMAGE", cls.trainer_image),
            image_pull_policy=env.get("NOVA_IMAGE_PULL_POLICY", cls.image_pull_policy),
            backoff_limit_per_index=int(env.get("NOVA_BACKOFF_LIMIT_PER_INDEX", cls.backoff_limit_per_index)),
            output_claim=env.get("NOVA_OUTPUT_CLAIM") or None,
            default_storage_secret=secret,
            default_queue=env.get("NOVA_DEFAULT_QUEUE") or None,
        )


def queue_name(run: ResolvedRun, cfg: OperatorConfig) -> str | None:
    """The Kueue LocalQueue of the run's Jobs: its own, else the operator's default, else none."""
    return run.spec.queue_name or cfg.default_queue


def _queued(job: dict[str, Any], run: ResolvedRun, cfg: OperatorConfig, release: bool) -> dict[str, Any]:
    """A Job for Kueue: created suspended (Kueue unsuspends it on admission; Nova never does), with
    the queue label when released to Kueue, and the queue Nova means as an annotation either way."""
    queue = queue_name(run, cfg)
    if queue is None:
        return job
    md = job["metadata"]
    md["annotations"][QUEUE_ANNOTATION] = queue
    if release:
        md["labels"][QUEUE_LABEL] = queue
    if run.spec.scheduling.workload_priority_class_name:
        md["labels"][PRIORITY_LABEL] = run.spec.scheduling.workload_priority_class_name
    job["spec"]["suspend"] = True
    return job


def config_map_name(run: str) -> str:
    return f"{run}-config"


def workers_job_name(run: str) -> str:
    return f"{run}-workers"


def refit_job_name(run: str) -> str:
    return f"{run}-refit"


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    """Children go with the run (garbage collection), and only one controller may own them."""
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "name": name, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}


def labels(run: ResolvedRun, component: str, cfg: OperatorConfig | None = None) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "nova",
        "app.kubernetes.io/instance": run.name,
        "app.kubernetes.io/managed-by": "nova-operator",
        COMPONENT_LABEL: component,
        RUN_LABEL: run.name,
        **(cfg.extra_labels if cfg else {}),
    }


def _metadata(run: ResolvedRun, name: str, component: str, owner: dict[str, Any],
              cfg: OperatorConfig | None = None) -> dict[str, Any]:
    return {"name": name, "namespace": run.namespace, "labels": labels(run, component, cfg),
            "annotations": {GENERATION_ANNOTATION: str(run.generation)}, "ownerReferences": [owner]}


def config_map(run: ResolvedRun, owner: dict[str, Any]) -> dict[str, Any]:
    """run.json: the spec with every default resolved. Never holds a secret (only references)."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _metadata(run, config_map_name(run.name), "config", owner),
            "data": {"run.json": run.to_json()}}


def storage_secret(run: ResolvedRun, cfg: OperatorConfig) -> SecretRef | None:
    return run.spec.tuning.storage.secret_ref or cfg.default_storage_secret


DEFAULT_STORAGE_SECRET_SOURCE = ("the operator's default storage Secret (NOVA_DEFAULT_STORAGE_SECRET, set by the "
                                 "chart's storage values), used because the run sets no spec.tuning.storage.secretRef")


def required_secrets(run: ResolvedRun, cfg: OperatorConfig) -> list[tuple[str, SecretRef]]:
    """(where the reference came from, reference) for every Secret key the pods read: checked
    before any pod starts. The first names a spec field, or says it is the operator's default."""
    found = []
    if run.spec.tuning.storage.secret_ref is not None:
        found.append(("spec.tuning.storage.secretRef", run.spec.tuning.storage.secret_ref))
    elif cfg.default_storage_secret is not None:
        found.append((DEFAULT_STORAGE_SECRET_SOURCE, cfg.default_storage_secret))
    if run.spec.data.secret_ref is not None:
        found.append(("spec.data.secretRef", run.spec.data.secret_ref))
    for field_name, secret in _credential_secrets(run):
        for key in (object_store.ACCESS_KEY, object_store.SECRET_KEY):  # the session token is optional
            found.append((field_name, SecretRef(name=secret, key=key)))
    return found


def _credential_secrets(run: ResolvedRun) -> list[tuple[str, str]]:
    """(field, Secret name) of the object-store credentials the pods need: data's when data.uri is
    an object-store URI, output's when output.uri is."""
    out = []
    for role, part in (("data", run.spec.data), ("output", run.spec.output)):
        secret = part.object_store.credentials_secret
        if secret and object_store.is_remote(part.uri):
            out.append((f"spec.{role}.objectStore.credentialsSecret", secret))
    return out


def _secret_env(name: str, ref: SecretRef) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def _env(run: ResolvedRun, cfg: OperatorConfig) -> list[dict[str, Any]]:
    spec = run.spec
    env: list[dict[str, Any]] = []
    if (ref := storage_secret(run, cfg)) is not None:
        env.append(_secret_env(STORAGE_URL_ENV, ref))
    if spec.data.secret_ref is not None:
        env.append(_secret_env(DATA_URL_ENV, spec.data.secret_ref))
    for field_name, secret in _credential_secrets(run):
        env += object_store.secret_env(field_name.split(".")[1], secret)
    if spec.data.claim_name:
        env.append({"name": DATA_ROOT_ENV, "value": DATA_CLAIM_DIR})
    device = spec.model.device
    # Device and RMM pool sizes as env: the trainer reads them from run.json (the one source of
    # truth); these mirror them so that `kubectl describe pod` shows what the pod will ask of its GPU.
    env += [
        {"name": "NOVA_RUN", "value": run.name},
        {"name": "NOVA_DEVICE", "value": device},
        {"name": "NOVA_RMM_ENABLED", "value": str(spec.gpu.rmm.enabled and spec.gpu.count > 0).lower()},
        {"name": "NOVA_RMM_INITIAL_POOL_SIZE", "value": spec.gpu.rmm.initial_pool_size},
        {"name": "NOVA_RMM_MAXIMUM_POOL_SIZE", "value": spec.gpu.rmm.maximum_pool_size},
        # a read-only root filesystem: every library cache goes to the writable /work emptyDir
        {"name": "HOME", "value": "/work"},
        {"name": "XDG_CACHE_HOME", "value": "/work/.cache"},
        {"name": "MPLCONFIGDIR", "value": "/work/.cache/matplotlib"},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]
    if spec.model.nthread:
        env.append({"name": "OMP_NUM_THREADS", "value": str(spec.model.nthread)})
    return env


def container_security_context() -> dict[str, Any]:
    """The "restricted" Pod Security Standard, container level."""
    return {"runAsNonRoot": True, "runAsUser": USER_ID, "runAsGroup": USER_ID,
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "privileged": False,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def pod_security_context() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": USER_ID, "runAsGroup": USER_ID, "fsGroup": USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _resources(res: ContainerResources, gpus: dict[str, int] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if res.requests:
        out["requests"] = dict(res.requests)
    limits: dict[str, Any] = dict(res.limits)
    for name, count in (gpus or {}).items():
        limits[name] = str(count)  # extended resources: the limit is also the request
    if limits:
        out["limits"] = limits
    return out


def _tolerations(run: ResolvedRun) -> list[dict[str, Any]]:
    """The user's tolerations, plus the usual taint of GPU nodes (key = the GPU resource name)."""
    tolerations = [dict(t) for t in run.spec.scheduling.tolerations]
    gpu = run.spec.gpu
    if gpu.count > 0 and not any(t.get("key") == gpu.resource_name for t in tolerations):
        tolerations.append({"key": gpu.resource_name, "operator": "Exists", "effect": "NoSchedule"})
    return tolerations


def _pod_scheduling(run: ResolvedRun) -> dict[str, Any]:
    sched = run.spec.scheduling
    out: dict[str, Any] = {}
    if sched.node_selector:
        out["nodeSelector"] = dict(sched.node_selector)
    if tolerations := _tolerations(run):
        out["tolerations"] = tolerations
    if sched.affinity:
        out["affinity"] = dict(sched.affinity)
    if sched.priority_class_name:
        out["priorityClassName"] = sched.priority_class_name
    if sched.service_account_name:
        out["serviceAccountName"] = sched.service_account_name
    return out


def _mounts(run: ResolvedRun, *extra: dict[str, Any]) -> list[dict[str, Any]]:
    data = ([{"name": "data", "mountPath": DATA_CLAIM_DIR, "readOnly": True}]
            if run.spec.data.claim_name else [])
    return [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "work", "mountPath": "/work"},
            *data, *extra]


def _volumes(run: ResolvedRun, *extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "config", "configMap": {"name": config_map_name(run.name)}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "work", "emptyDir": {}},
            *([{"name": "data", "persistentVolumeClaim": {"claimName": run.spec.data.claim_name, "readOnly": True}}]
              if run.spec.data.claim_name else []),
            *extra]


def _pod_spec(run: ResolvedRun, cfg: OperatorConfig, containers: list[dict[str, Any]],
              volumes: list[dict[str, Any]], init_containers: list[dict[str, Any]] | None = None
              ) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "restartPolicy": "Never",  # the Job retries, per index; needed by backoffLimitPerIndex
        "automountServiceAccountToken": False,  # the pods never talk to the API server
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": cfg.termination_grace_seconds,
        "securityContext": pod_security_context(),
        "containers": containers,
        "volumes": volumes,
        **_pod_scheduling(run),
    }
    if init_containers:
        pod["initContainers"] = init_containers
    return pod


def _container(run: ResolvedRun, cfg: OperatorConfig, name: str, args: list[str],
               resources: dict[str, Any], mounts: list[dict[str, Any]]) -> dict[str, Any]:
    env = _env(run, cfg)
    if cpus := cpu_env(resources):
        env.append(cpus)
    c: dict[str, Any] = {
         "name": name, "image": run.spec.image or cfg.trainer_image, "imagePullPolicy": cfg.image_pull_policy,
         "command": ["nova-trainer"], "args": args, "env": env, "volumeMounts": mounts,
         "securityContext": container_security_context(),
         "terminationMessagePolicy": "FallbackToLogsOnError"}
    if resources:
        c["resources"] = resources
    return c


def cpu_env(resources: dict[str, Any]) -> dict[str, Any] | None:
    """$NOVA_CPUS from this container's own CPU (limit, else request; whole cores, rounded up by the
    kubelet): the process sizes its threads by it, so prep and the trainer do not fight over the same
    cores (nova.cpus). None when the container asks for no CPU: the process then reads its cgroup."""
    source = cpu_source(resources.get("requests", {}), resources.get("limits", {}))
    if source is None:
        return None
    # no containerName: an env var's resourceFieldRef is the container's own
    return {"name": CPUS_ENV, "valueFrom": {"resourceFieldRef": {"resource": source, "divisor": "1"}}}


def worker_job(run: ResolvedRun, owner: dict[str, Any], cfg: OperatorConfig) -> dict[str, Any]:
    """The Indexed Job of `tuning.workers` pods: prep (native sidecar) builds features ahead into an
    emptyDir, trainer joins each symbol's study and runs trials until the budget is held. With a
    queue it starts suspended and is released to Kueue unless the user suspended the run."""
    spec = run.spec
    features = {"name": "features", "mountPath": FEATURES_DIR}
    prep = _container(run, cfg, "prep", ["prep", "--config", RUN_JSON, "--out", FEATURES_DIR, "--linger"],
                      _resources(spec.resources.prep), _mounts(run, features))
    prep["restartPolicy"] = "Always"  # a native sidecar: runs beside the trainer, stops after it
    gpus = {spec.gpu.resource_name: spec.gpu.count} if spec.gpu.count > 0 else {}
    trainer = _container(run, cfg, "trainer", ["tune", "--config", RUN_JSON, "--shards", FEATURES_DIR],
                         _resources(spec.resources.trainer, gpus), _mounts(run, features))
    pod_labels = labels(run, "worker", cfg)
    return _queued({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": _metadata(run, workers_job_name(run.name), "worker", owner, cfg),
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.tuning.workers,
            "parallelism": spec.tuning.workers,
            "backoffLimitPerIndex": cfg.backoff_limit_per_index,
            "suspend": spec.suspend,
            "podFailurePolicy": {"rules": [
                # evicted or preempted pods are not the worker's fault: retried without counting
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                # exit 2 is an error the user must fix (bad data, refused storage): retrying won't help
                {"action": "FailIndex", "onExitCodes": {"containerName": "trainer", "operator": "In",
                                                        "values": [2]}},
            ]},
            "template": {
                "metadata": {"labels": pod_labels,
                             "annotations": {GENERATION_ANNOTATION: str(run.generation)}},
                "spec": _pod_spec(run, cfg, [trainer], _volumes(run, {"name": "features", "emptyDir": {}}),
                                  init_containers=[prep]),
            },
        },
    }, run, cfg, release=not spec.suspend)


def output_dir(run: ResolvedRun) -> str:
    """Where the run's models go, as status.model.uri shows it: the run-scoped prefix of an
    object-store output.uri, else the folder the output volume is mounted at."""
    local = run.spec.output.uri or f"{DEFAULT_OUTPUT_ROOT}/{run.namespace}/{run.name}"
    return object_store.model_root(run, local)


def refit_job(run: ResolvedRun, owner: dict[str, Any], cfg: OperatorConfig) -> dict[str, Any]:
    """One pod: the best parameters of each study trained on the whole window; the per-symbol
    summary goes to the termination message, where the operator reads it for status.model."""
    spec = run.spec
    out = output_dir(run)
    mounts = _mounts(run)
    volumes = _volumes(run)
    if object_store.is_remote(out):  # models go to the store; summary.json to the writable /work
        out = REMOTE_WORK_DIR
    else:  # a path: mount the output volume there (writable, unlike the root filesystem)
        # on the shared claim each run gets its own folder, <namespace>/<run> (kubelet creates it), so
        # two runs never write over each other's models and a pod sees only its own run's files
        mounts.append({"name": "output", "mountPath": out,
                       **({"subPath": f"{run.namespace}/{run.name}"} if cfg.output_claim else {})})
        volumes.append({"name": "output", **({"persistentVolumeClaim": {"claimName": cfg.output_claim}}
                                            if cfg.output_claim else {"emptyDir": {}})})
    gpus = {spec.gpu.resource_name: spec.gpu.count} if spec.gpu.count > 0 else {}
    refit = _container(run, cfg, "refit", [], _resources(spec.resources.trainer, gpus), mounts)
    if cfg.output_claim and not object_store.is_remote(output_dir(run)):  # KServe reads the claim as pvc://
        refit["env"].append({"name": "NOVA_OUTPUT_SERVING_URI",
                             "value": f"pvc://{cfg.output_claim}/{run.namespace}/{run.name}"})
    refit["command"] = ["sh", "-c", 'nova-trainer refit --config "$0" --out "$1" && cat "$1/summary.json" > "$2"',
                        RUN_JSON, out, RESULT_PATH]
    refit.pop("args")
    refit["terminationMessagePath"] = RESULT_PATH
    return _queued({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": _metadata(run, refit_job_name(run.name), "refit", owner, cfg),
        "spec": {
            "completions": 1, "parallelism": 1, "backoffLimit": cfg.refit_backoff_limit,
            "podFailurePolicy": {"rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                {"action": "FailJob", "onExitCodes": {"containerName": "refit", "operator": "In", "values": [2]}},
            ]},
            "template": {
                "metadata": {"labels": labels(run, "refit", cfg)},
                "spec": _pod_spec(run, cfg, [refit], volumes),
            },
        },
    }, run, cfg, release=True)


def promote_job_name(run: str) -> str:
    return f"{run}-promote"


def promotion_root(run: ResolvedRun, cfg: OperatorConfig) -> str | None:
    """Where a promote pod finds every run's models of the namespace (and the schedule's current/
    folder): the output claim's <namespace> folder. None when the refit writes to an emptyDir (its
    models go with its pod) or to the run's own output.uri."""
    if run.spec.output.uri or not cfg.output_claim:
        return None
    return f"{DEFAULT_OUTPUT_ROOT}/{run.namespace}"


def promote_job(run: ResolvedRun, owner: dict[str, Any], cfg: OperatorConfig, request: dict[str, Any]
                ) -> dict[str, Any]:
    """One CPU pod, `nova-trainer promote`: the run's models and the schedule's promoted ones scored on
    the same newest bars; the decision goes to the termination message, where the schedule's pass
    reads it. Owned by the run, so it goes with it. Not queued: it is small and needs no GPU."""
    root = promotion_root(run, cfg)
    if root is None:
        raise ValueError("promotion needs the operator's output claim and runs without output.uri")
    mounts = _mounts(run, {"name": "output", "mountPath": root, "subPath": run.namespace})
    volumes = _volumes(run, {"name": "output", "persistentVolumeClaim": {"claimName": cfg.output_claim}})
    args = ["promote", "--config", RUN_JSON, "--request", json.dumps(request, separators=(",", ":")),
            "--result", RESULT_PATH]
    container = _container(run, cfg, "promote", args, _resources(run.spec.resources.trainer), mounts)
    container["terminationMessagePath"] = RESULT_PATH
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": _metadata(run, promote_job_name(run.name), "promote", owner, cfg),
        "spec": {
            "completions": 1, "parallelism": 1, "backoffLimit": 1,
            "podFailurePolicy": {"rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                {"action": "FailJob", "onExitCodes": {"containerName": "promote", "operator": "In",
                                                      "values": [2]}},
            ]},
            "template": {
                "metadata": {"labels": labels(run, "promote", cfg)},
                "spec": _pod_spec(run, cfg, [container], volumes),
            },
        },
    }


def suspend_patch(suspend: bool) -> dict[str, Any]:
    return {"spec": {"suspend": suspend}}


def scale_patch(run: ResolvedRun) -> dict[str, Any]:
    """Elastic Indexed Job: completions and parallelism move together (Kubernetes >= 1.27)."""
    workers = run.spec.tuning.workers
    return {"spec": {"completions": workers, "parallelism": workers}}
