"""The few API calls the operator makes, each idempotent: create-or-get by name, so a restarted
operator (or a create handler racing the status timer) never makes a second child."""

from __future__ import annotations

import base64
import logging
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from nova.spec import API_GROUP, API_VERSION, PLURAL, SecretRef

log = logging.getLogger(__name__)


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


_sanitizer: kubernetes.client.ApiClient | None = None


def _plain(obj: Any) -> dict[str, Any]:
    global _sanitizer
    if _sanitizer is None:  # one client for the conversion: it needs no connection
        _sanitizer = kubernetes.client.ApiClient()
    return _sanitizer.sanitize_for_serialization(obj)


class Kube:
    """Typed clients created once; every method takes and returns plain dicts (camelCase)."""

    def __init__(self) -> None:
        client = _api()
        self.core = kubernetes.client.CoreV1Api(client)
        self.batch = kubernetes.client.BatchV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)

    # -- reads ---------------------------------------------------------------------------------
    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _plain(self.batch.read_namespaced_job(name, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _plain(self.core.read_namespaced_config_map(name, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def secret_value(self, namespace: str, ref: SecretRef) -> tuple[str | None, str | None]:
        """(value, None) or (None, why-not): 'missing' (no Secret) or 'no-key' (Secret without the key)."""
        try:
            secret = self.core.read_namespaced_secret(ref.name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None, "missing"
            raise
        data = secret.data or {}
        if ref.key not in data:
            string_data = secret.string_data or {}
            if ref.key in string_data:
                return string_data[ref.key], None
            return None, "no-key"
        return base64.b64decode(data[ref.key]).decode(), None

    def pod_result(self, namespace: str, job_name: str, container: str) -> str | None:
        """The termination message of the Job's succeeded pod (where the refit puts its summary)."""
        pods = self.core.list_namespaced_pod(namespace, label_selector=f"job-name={job_name}")
        for pod in pods.items:
            if pod.status and pod.status.phase == "Succeeded":
                for cs in pod.status.container_statuses or []:
                    term = cs.state.terminated if cs.state else None
                    if cs.name == container and term and term.message:
                        return term.message
        return None

    def failed_pod_message(self, namespace: str, job_name: str, container: str) -> str | None:
        """The last line a failed pod's container left (FallbackToLogsOnError): what went wrong."""
        pods = self.core.list_namespaced_pod(namespace, label_selector=f"job-name={job_name}")
        newest = None
        for pod in pods.items:
            for cs in (pod.status.container_statuses or []) if pod.status else []:
                term = cs.state.terminated if cs.state else None
                if cs.name == container and term and term.exit_code and term.message:
                    if newest is None or (term.finished_at and newest[0] and term.finished_at > newest[0]):
                        newest = (term.finished_at, term.message)
        if newest is None:
            return None
        lines = [ln for ln in newest[1].strip().splitlines() if ln.strip()]
        return lines[-1][:500] if lines else None

    # -- writes ---------------------------------------------------------------------------------
    def create_or_get(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the child; if one with that name exists, return it unchanged. (object, created)"""
        ns, name, kind = manifest["metadata"]["namespace"], manifest["metadata"]["name"], manifest["kind"]
        create, read = {
            "ConfigMap": (self.core.create_namespaced_config_map, self.core.read_namespaced_config_map),
            "Job": (self.batch.create_namespaced_job, self.batch.read_namespaced_job),
        }[kind]
        try:
            return _plain(create(ns, manifest)), True
        except ApiException as exc:
            if exc.status != 409:
                raise
        return _plain(read(name, ns)), False

    def replace_config_map(self, manifest: dict[str, Any]) -> None:
        md = manifest["metadata"]
        self.core.patch_namespaced_config_map(md["name"], md["namespace"],
                                              {"metadata": {"annotations": md["annotations"]},
                                               "data": manifest["data"]})

    def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.batch.patch_namespaced_job(name, namespace, patch)

    def delete_run(self, namespace: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, name,
                                                        propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
