"""The few API calls the operator makes, each idempotent: create-or-get by name, so a restarted
operator (or a watch-event pass racing a resync pass of the same run) never makes a second child."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from nova.schedule import SCHEDULE_PLURAL
from nova.spec import API_GROUP, API_VERSION, KIND, PLURAL, SecretRef
from nova_operator import queueing

log = logging.getLogger(__name__)
EVENT_SOURCE = "nova-operator"


def load_config(pool_size: int = 40) -> None:
    """In a pod: the service account; elsewhere: $KUBECONFIG or ~/.kube/config.

    ``pool_size``: HTTPS connections kept to the API server. It must cover the handler threads: the
    client's default (5 per CPU) made every request past it open (and drop) a new TLS connection,
    which on 2 cores cost more than the requests themselves under 200 new runs."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    cfg = kubernetes.client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = max(pool_size, cfg.connection_pool_maxsize or 0)
    kubernetes.client.Configuration.set_default(cfg)


def _api() -> kubernetes.client.ApiClient:
    return kubernetes.client.ApiClient()


def _json(call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call the typed client but take the response as plain JSON: building the client's model
    objects (and turning them back into dicts) cost more CPU than the request itself, which under
    200 new runs on 2 cores was the operator's bottleneck."""
    return json.loads(call(*args, _preload_content=False, **kwargs).data)


class Kube:
    """Typed clients created once; every method takes and returns plain dicts (camelCase).

    Secret values are kept for `secret_ttl` seconds: every run of a namespace usually names the
    same storage Secret, and each status pass checks it. Only found values are kept, so a Secret
    created after the run that needed it is seen at the next pass."""

    def __init__(self, secret_ttl: float = 15.0, clock: Callable[[], float] = time.monotonic) -> None:
        client = _api()
        self.core = kubernetes.client.CoreV1Api(client)
        self.batch = kubernetes.client.BatchV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self._secret_ttl, self._clock = secret_ttl, clock
        self._secrets: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._secrets_lock = threading.Lock()

    # -- reads ---------------------------------------------------------------------------------
    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _json(self.batch.read_namespaced_job, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        key, now = (namespace, name), self._clock()
        with self._secrets_lock:
            cached = self._secrets.get(key)
        if cached and now - cached[0] < self._secret_ttl:
            return cached[1]
        try:
            secret = _json(self.core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        with self._secrets_lock:
            self._secrets[key] = (now, secret)
        return secret

    def secret_value(self, namespace: str, ref: SecretRef) -> tuple[str | None, str | None]:
        """(value, None) or (None, why-not): 'missing' (no Secret) or 'no-key' (Secret without the key)."""
        secret = self._secret(namespace, ref.name)
        if secret is None:
            return None, "missing"
        data = secret.get("data") or {}
        if ref.key not in data:
            string_data = secret.get("stringData") or {}
            if ref.key in string_data:
                return string_data[ref.key], None
            with self._secrets_lock:  # maybe just added: read it afresh next time
                self._secrets.pop((namespace, ref.name), None)
            return None, "no-key"
        return base64.b64decode(data[ref.key]).decode(), None

    def _terminated(self, namespace: str, job_name: str, container: str) -> Iterator[tuple[str | None, dict[str, Any]]]:
        """(pod phase, terminated state) of the Job's pods' `container`."""
        pods = _json(self.core.list_namespaced_pod, namespace, label_selector=f"job-name={job_name}")
        for pod in pods.get("items") or []:
            status = pod.get("status") or {}
            for cs in status.get("containerStatuses") or []:
                term = (cs.get("state") or {}).get("terminated")
                if cs.get("name") == container and term:
                    yield status.get("phase"), term

    def pod_result(self, namespace: str, job_name: str, container: str) -> str | None:
        """The termination message of the Job's succeeded pod (where the refit puts its summary)."""
        for phase, term in self._terminated(namespace, job_name, container):
            if phase == "Succeeded" and term.get("message"):
                return term["message"]
        return None

    def failed_pod_message(self, namespace: str, job_name: str, container: str) -> str | None:
        """The last line a failed pod's container left (FallbackToLogsOnError): what went wrong."""
        failed = [t for _, t in self._terminated(namespace, job_name, container)
                  if t.get("exitCode") and t.get("message")]
        if not failed:
            return None
        newest = max(failed, key=lambda t: t.get("finishedAt") or "")  # RFC 3339 UTC: sorts as text
        lines = [ln for ln in newest["message"].strip().splitlines() if ln.strip()]
        return lines[-1][:500] if lines else None

    def job_workload(self, namespace: str, job_uid: str) -> tuple[dict[str, Any] | None, str | None]:
        """(the Kueue Workload of a Job or None, None) or (None, why Kueue cannot be read)."""
        try:
            found = _json(self.custom.list_namespaced_custom_object, queueing.WORKLOAD_GROUP,
                          queueing.WORKLOAD_VERSION, namespace, queueing.WORKLOAD_PLURAL,
                          label_selector=f"{queueing.JOB_UID_LABEL}={job_uid}")
        except ApiException as exc:
            if exc.status == 404:
                return None, (f"the API server serves no {queueing.WORKLOAD_PLURAL}.{queueing.WORKLOAD_GROUP}/"
                              f"{queueing.WORKLOAD_VERSION}: install Kueue (v0.15 or later), or run without a "
                              "queue (unset spec.queueName and the operator's NOVA_DEFAULT_QUEUE)")
            if exc.status == 403:
                return None, (f"the operator may not list {queueing.WORKLOAD_PLURAL}.{queueing.WORKLOAD_GROUP} in "
                              f"namespace '{namespace}': grant it get/list/patch on them (the chart's ClusterRole "
                              "does)")
            raise
        return queueing.pick_workload(job_uid, found.get("items") or []), None

    # -- writes ---------------------------------------------------------------------------------
    def create_or_get(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the child; if one with that name exists, return it unchanged. (object, created)"""
        ns, name, kind = manifest["metadata"]["namespace"], manifest["metadata"]["name"], manifest["kind"]
        calls: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
            "ConfigMap": (self.core.create_namespaced_config_map, self.core.read_namespaced_config_map),
            "Job": (self.batch.create_namespaced_job, self.batch.read_namespaced_job),
            KIND: (lambda ns, body, **kw: self.custom.create_namespaced_custom_object(
                       API_GROUP, API_VERSION, ns, PLURAL, body, **kw),
                   lambda name, ns, **kw: self.custom.get_namespaced_custom_object(
                       API_GROUP, API_VERSION, ns, PLURAL, name, **kw)),
        }
        create, read = calls[kind]
        try:
            return _json(create, ns, manifest), True
        except ApiException as exc:
            if exc.status != 409:
                raise
        return _json(read, name, ns), False

    def replace_config_map(self, manifest: dict[str, Any]) -> None:
        md = manifest["metadata"]
        self.core.patch_namespaced_config_map(md["name"], md["namespace"],
                                              {"metadata": {"annotations": md["annotations"]},
                                               "data": manifest["data"]}, _preload_content=False)

    def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.batch.patch_namespaced_job(name, namespace, patch, _preload_content=False)

    def patch_workload(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(queueing.WORKLOAD_GROUP, queueing.WORKLOAD_VERSION, namespace,
                                                   queueing.WORKLOAD_PLURAL, name, patch,
                                                   _content_type="application/merge-patch+json",
                                                   _preload_content=False)

    def patch_run_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch the run's status; returns the run as stored, or None if it is gone."""
        try:
            return _json(self.custom.patch_namespaced_custom_object_status, API_GROUP, API_VERSION, namespace,
                         PLURAL, name, {"status": status}, _content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch_run(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> bool:
        """JSON-patch the run; False when one of its `test` ops failed (the run changed since it
        was read: the event that says so comes next) or the run is gone."""
        try:
            self.custom.patch_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, name, ops,
                                                       _content_type="application/json-patch+json",
                                                       _preload_content=False)
            return True
        except ApiException as exc:
            if exc.status in (404, 409, 422):
                return False
            raise

    def list_runs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """The TrainingRuns of a namespace with these labels (a schedule's own)."""
        return list(_json(self.custom.list_namespaced_custom_object, API_GROUP, API_VERSION, namespace, PLURAL,
                          label_selector=label_selector).get("items") or [])

    def patch_schedule_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch a TrainingSchedule's status; returns it as stored, or None if it is gone."""
        try:
            return _json(self.custom.patch_namespaced_custom_object_status, API_GROUP, API_VERSION, namespace,
                         SCHEDULE_PLURAL, name, {"status": status}, _content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def post_event(self, run: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the run, as `kubectl describe trainingrun` shows them. Best effort:
        a lost Event is logged, never fails the pass that decided it."""
        md = run["metadata"]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {"metadata": {"generateName": f"{md['name']}.", "namespace": md["namespace"]},
                 "involvedObject": {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": run.get("kind", KIND),
                                    "namespace": md["namespace"], "name": md["name"], "uid": md["uid"],
                                    "resourceVersion": md.get("resourceVersion")},
                 "type": type_, "reason": reason, "message": message[:1024], "action": reason,
                 "source": {"component": EVENT_SOURCE}, "reportingComponent": EVENT_SOURCE,
                 "reportingInstance": EVENT_SOURCE, "firstTimestamp": now[:19] + "Z", "lastTimestamp": now[:19] + "Z",
                 "eventTime": now, "count": 1}
        try:
            self.core.create_namespaced_event(md["namespace"], event, _preload_content=False)  # type: ignore[arg-type]  # plain JSON, as every call here (_json)
        except ApiException as exc:
            log.warning("could not post Event %s on %s/%s: %s", reason, md["namespace"], md["name"], exc.reason)

    def delete_run(self, namespace: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, name,
                                                        propagation_policy="Background", _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise
