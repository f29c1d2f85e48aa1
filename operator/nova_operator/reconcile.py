"""One level-triggered pass over a run: judge what only the operator can judge, make sure the
children exist (create-or-get), observe them and the studies, and decide the status.

Called for every watch event of a run whose status has not seen its generation (for a prompt Job)
and by the periodic resync (for progress and recovery), so any pass can be the first after an
operator restart (handlers.py)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

import tenacity
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from nova.errors import StorageError
from nova.spec import ResolvedRun, TrainingRunSpec, format_validation_error
from nova.study_identity import StudyMismatch
from nova_operator import builders, failpoints, finalizers, queueing
from nova_operator.context import OperatorContext
from nova_operator.decision import Decision, JobState, Observed, Problem, decide
from nova_operator.kube import Kube
from nova_operator.queueing import Admission
from nova_operator.studies import Studies, empty_progress

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    decision: Decision | None
    deleted: bool = False


def resolve_run(body: dict[str, Any]) -> ResolvedRun | Problem:
    md = body["metadata"]
    try:
        spec = TrainingRunSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        return Problem("InvalidSpec", "spec is invalid: " + format_validation_error(exc, "spec.").replace("\n", "; "))
    return ResolvedRun(name=md["name"], namespace=md["namespace"], generation=md.get("generation", 1), spec=spec)


def check_secrets(kube: Kube, run: ResolvedRun, cfg: builders.OperatorConfig,
                  operator_storage_url: str | None = None) -> tuple[str | None, Problem | None]:
    """Every Secret key the pods will read exists; returns the storage URL for the operator (its
    own, when it has one, else the pods').

    A missing Secret or key is something to wait for, not a failure: the run stays Pending with a
    condition that says what to create, and goes on by itself once it exists (retry=True)."""
    storage_ref = builders.storage_secret(run, cfg)
    if storage_ref is None:
        return None, Problem("StorageNotConfigured", "no Optuna storage: set spec.tuning.storage.secretRef "
                             "to a Secret key holding a SQLAlchemy URL (postgresql+psycopg://user:password@host/db)",
                             retry=True)
    storage_url = None
    for source, ref in builders.required_secrets(run, cfg):
        value, why = kube.secret_value(run.namespace, ref)
        if why == "missing":
            return None, Problem("SecretNotFound", f"waiting for Secret '{ref.name}' (named by {source}) in namespace "
                                 f"'{run.namespace}': create it with key '{ref.key}', e.g. `kubectl -n {run.namespace} "
                                 f"create secret generic {ref.name} --from-literal={ref.key}=<url>`", retry=True)
        if why == "no-key":
            fix = f"fix {source}.key" if source.startswith("spec.") else "name the key in NOVA_DEFAULT_STORAGE_SECRET"
            return None, Problem("SecretKeyNotFound", f"waiting for key '{ref.key}' in Secret '{ref.name}' (named by "
                                 f"{source}): add it (`kubectl -n {run.namespace} edit secret {ref.name}`) or {fix}",
                                 retry=True)
        if ref is storage_ref:
            storage_url = value
    return operator_storage_url or storage_url, None


def child_problem(exc: ApiException, what: str) -> Problem:
    """The API server refused to create or change a child (its ConfigMap or a Job): a 4xx answer
    will not change by retrying the same spec, so the run fails saying what to fix; a 5xx or 429
    is waited out."""
    reason, message = exc.reason or "", ""
    try:
        body = json.loads(exc.body or "{}")
        message = str(body.get("message") or "")
        reason = str(body.get("reason") or reason)
    except (TypeError, ValueError):
        message = str(exc.body or "")[:300]
    status = exc.status or 0
    if status >= 500 or status == 429:
        return Problem("ApiUnavailable", f"the API server could not {what} ({status} {reason}): {message[:300]}; "
                       "retrying", retry=True)
    hint = "fix the spec and apply it again"
    if "Too long" in message or "too large" in message or status == 413:
        hint = ("the resolved spec is too large for one ConfigMap (1 MiB): shrink spec.model.params, "
                "spec.tuning.searchSpace or spec.data.symbols")
    return Problem("ChildRejected", f"the API server refused to {what} ({status} {reason}): {message[:500]}; {hint}")


def open_storage(studies: Studies, url: str) -> tuple[Any, Problem | None]:
    try:
        return studies.open_storage(url), None
    except StorageError as exc:
        return None, Problem("StorageRefused" if exc.permanent else "StorageUnavailable", str(exc),
                             retry=not exc.permanent)


def ensure_workers(ctx: OperatorContext, run: ResolvedRun, owner: dict[str, Any], storage: Any,
                   job: dict[str, Any] | None, spec_changed: bool) -> tuple[dict[str, Any], bool]:
    """ConfigMap, the worker Job, then the studies: each created once; edits applied in place.
    Returns the Job and whether every study was made in this pass (then there is no progress to read).

    The studies come after the Job so that it does not wait on the database: a worker opens its
    study with Optuna's load_if_exists, so whichever makes it first, the other loads it (and pods
    spend seconds being scheduled and building features before they open it). Storages are cached
    per URL, so a database that went down since it was first opened is found here, after the Job
    exists, by the study inserts (the run then reports StorageUnavailable).

    `job` is the worker Job as the caller read it (None on a run's first pass: nothing to read yet,
    so we create at once, one call when nothing exists). The ConfigMap is only looked at when the
    Job is missing or the spec changed since the last pass: a status pass over a steady run then
    costs one read, the Job's."""
    kube = ctx.kube
    if job is None or spec_changed:
        cm = builders.config_map(run, owner)
        existing, created = kube.create_or_get(cm)
        if not created and existing["metadata"].get("annotations", {}).get(builders.GENERATION_ANNOTATION) != \
                str(run.generation):
            kube.replace_config_map(cm)  # budgets and parallelism may change; immutable fields cannot
        failpoints.hit("after-configmap")
    fresh = False
    if job is None:
        job, created = kube.create_or_get(builders.worker_job(run, owner, ctx.cfg))
        if created:
            log.info("created Job %s/%s", run.namespace, job["metadata"]["name"])
        failpoints.hit("after-job")
        made = ctx.studies.create_studies(run, storage)
        fresh = len(made) == len(run.spec.data.symbols)
        failpoints.hit("after-studies")
    spec = job.get("spec") or {}
    patch: dict[str, Any] = {}
    # a queued Job is Kueue's to start: its suspend follows the run in follow_queue
    if queueing.job_queue(job) is None and bool(spec.get("suspend")) != run.spec.suspend and not _finished(job):
        patch.update(builders.suspend_patch(run.spec.suspend)["spec"])
    if spec.get("parallelism") != run.spec.tuning.workers and not _finished(job):
        patch.update(builders.scale_patch(run)["spec"])
    if patch:
        kube.patch_job(run.namespace, job["metadata"]["name"], {"spec": patch})
        job["spec"] = {**spec, **patch}
    return job, fresh


def follow_queue(kube: Kube, job: dict[str, Any] | None, suspend: bool) -> Admission:
    """A queued Job: read its Workload, apply Nova's side of spec.suspend (queueing.follow_suspend),
    and say where it stands with Kueue. One list call per pass, only for an unfinished queued Job."""
    queue = queueing.job_queue(job)
    if job is None or queue is None:
        return Admission()
    if _finished(job):
        return Admission(queue, admitted=True, reason="Finished", message="")
    md = job["metadata"]
    workload, missing = kube.job_workload(md["namespace"], md["uid"]) if queueing.released(job) else (None, None)
    patches = queueing.follow_suspend(suspend, job, workload)
    if patches.job:
        kube.patch_job(md["namespace"], md["name"], patches.job)
        md["labels"] = {**(md.get("labels") or {}), **(patches.job.get("metadata") or {}).get("labels", {})}
        job["spec"] = {**(job.get("spec") or {}), **patches.job.get("spec", {})}
    if patches.workload and workload is not None:
        kube.patch_workload(md["namespace"], workload["metadata"]["name"], patches.workload)
        log.info("%s Workload %s/%s for Job %s", "held" if suspend else "released", md["namespace"],
                 workload["metadata"]["name"], md["name"])
    return queueing.admission(job, workload, missing)


def _finished(job: dict[str, Any]) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def reconcile(ctx: OperatorContext, body: dict[str, Any], now: dt.datetime | None = None) -> Outcome:
    kube, cfg, studies = ctx.kube, ctx.cfg, ctx.studies
    md = body["metadata"]
    previous = dict(body.get("status") or {})
    name, namespace = md["name"], md["namespace"]
    workers_name, refit_name = builders.workers_job_name(name), builders.refit_job_name(name)
    now = now or dt.datetime.now(dt.UTC)

    if previous.get("phase") in ("Succeeded", "Failed") and _ttl_expired(body, previous, now):
        kube.delete_run(namespace, name)
        return Outcome(None, deleted=True)
    if previous.get("phase") == "Succeeded" and previous.get("observedGeneration") == md.get("generation"):
        return Outcome(None)  # final: nothing left to observe
    if _stalled_reason(previous) == "StudyMismatch" and previous.get("observedGeneration") == md.get("generation"):
        return Outcome(None)  # final until re-created: another spec's study is never merged into

    run = resolve_run(body)
    if isinstance(run, Problem):
        # a placeholder spec carries the Failed status; the problem's message names the bad field
        fallback = ResolvedRun(name=name, namespace=namespace, generation=md.get("generation", 1),
                               spec=TrainingRunSpec.model_validate({"data": {"symbols": ["invalid"]}}))
        return Outcome(decide(fallback, Observed(problem=run), previous, "", workers_name, refit_name, now))

    owner = builders.owner_reference(name, md["uid"])
    url, problem = check_secrets(kube, run, cfg, ctx.settings.operator_storage_url)
    storage = None
    if problem is None and url:
        storage, problem = open_storage(studies, url)
    first_pass = not previous.get("phase")
    workers = None if first_pass and problem is None else kube.get_job(namespace, workers_name)
    fresh_studies = False
    if problem is None:
        try:
            spec_changed = previous.get("observedGeneration") != md.get("generation")
            workers, fresh_studies = ensure_workers(ctx, run, owner, storage, workers, spec_changed=spec_changed)
        except StudyMismatch as exc:  # the Job may exist already: its pods must not run another spec's study
            problem = Problem("StudyMismatch", str(exc))
            kube.patch_job(namespace, workers_name, builders.suspend_patch(True))
        except StorageError as exc:  # the database went down since its storage was opened
            studies.forget(url or "")
            problem = Problem("StorageUnavailable", str(exc), retry=True)
        except ApiException as exc:
            if exc.status == 404:  # its namespace is going away: nothing to create any more
                raise
            problem = child_problem(exc, f"create the ConfigMap or Job of run {namespace}/{name}")

    progress = empty_progress(run) if fresh_studies else None
    if storage is not None and not fresh_studies:
        try:
            progress = studies.read_progress(run, storage)
        except StorageError as exc:
            studies.forget(url or "")
            problem = problem or Problem("StorageUnavailable", str(exc), retry=True)
    workers_queue = Admission()
    if problem is None:
        try:
            workers_queue = follow_queue(kube, workers, run.spec.suspend)
        except ApiException as exc:
            problem = child_problem(exc, f"hold or release the queued Job {workers_name}")
    workers_state = JobState.from_job(workers)
    if workers_state.failed_condition:
        detail = kube.failed_pod_message(namespace, workers_name, "trainer")
        if detail:
            workers_state = JobState(**{**workers_state.__dict__, "failed_message": detail})
    # the refit Job can only exist once tuning is over (this operator creates it then): no read before
    budget = run.spec.tuning.trials
    refit_possible = (previous.get("phase") in ("Refitting", "Succeeded", "Failed") or _finished(workers or {})
                      or bool(progress and all(s.done(budget) for s in progress)))
    refit = kube.get_job(namespace, refit_name) if refit_possible else None
    refit_state = JobState.from_job(refit, kube.pod_result(namespace, refit_name, "refit")
                                    if refit and _finished(refit) else None)
    refit_queue = follow_queue(kube, refit, suspend=False)
    decision = decide(run, Observed(workers=workers_state, refit=refit_state, studies=progress, problem=problem,
                                    workers_queue=workers_queue, refit_queue=refit_queue),
                      previous, builders.output_dir(run), workers_name, refit_name, now)
    if decision.create_refit:
        try:
            kube.create_or_get(builders.refit_job(run, owner, cfg))
        except ApiException as exc:
            problem = child_problem(exc, f"create the refit Job {refit_name}")
            decision = decide(run, Observed(workers=workers_state, studies=progress, problem=problem,
                                            workers_queue=workers_queue),
                              previous, builders.output_dir(run), workers_name, refit_name, now)
    return Outcome(decision)


def _stalled_reason(status: dict[str, Any]) -> str | None:
    return next((c.get("reason") for c in status.get("conditions") or []
                 if c.get("type") == "Stalled" and c.get("status") == "True"), None)


def _ttl_expired(body: dict[str, Any], status: dict[str, Any], now: dt.datetime) -> bool:
    ttl = (body.get("spec") or {}).get("ttlSecondsAfterFinished")
    done = status.get("completionTime")
    if ttl is None or not done:
        return False
    finished = dt.datetime.strptime(done, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return now >= finished + dt.timedelta(seconds=int(ttl))


def needs_pass(ctx: OperatorContext, body: dict[str, Any]) -> bool:
    """A run whose status has not seen its current generation, and that this process has not
    already decided for (its status patch may still be on its way)."""
    md = body["metadata"]
    if md.get("deletionTimestamp"):
        return False
    generation = md.get("generation")
    if ctx.handled.get(md["uid"]) == generation:
        return False
    status = body.get("status") or {}
    return not status.get("phase") or status.get("observedGeneration") != generation


def hold_finalizer(ctx: OperatorContext, body: dict[str, Any]) -> None:
    """Nova's finalizer on exactly the runs whose studies go with them (keepStudies: false)."""
    md = body["metadata"]
    ops = finalizers.patch_to(body, hold=finalizers.drops_studies(body))
    if ops is not None:
        ctx.kube.patch_run(md["namespace"], md["name"], ops)


def delete_studies(ctx: OperatorContext, body: dict[str, Any]) -> list[str]:
    """On deletion with keepStudies false: drop the run's studies from the storage."""
    run = resolve_run(body)
    if isinstance(run, Problem):
        return []
    url, problem = check_secrets(ctx.kube, run, ctx.cfg, ctx.settings.operator_storage_url)
    if problem is not None or not url:
        raise StorageError(problem.message if problem else "no storage URL")
    storage, problem = open_storage(ctx.studies, url)
    if problem is not None:
        raise StorageError(problem.message)
    return ctx.studies.delete_studies(run, storage)


def release(ctx: OperatorContext, body: dict[str, Any], attempts: int = 3, delay: float = 5.0) -> None:
    """A run going with Nova's finalizer: delete its studies if the spec says so (a few tries; the
    deletion is never held for the storage's sake), then let it go."""
    md = body["metadata"]
    if finalizers.drops_studies(body):
        retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(attempts), wait=tenacity.wait_fixed(delay),
                                     reraise=True)
        try:
            deleted = retrying(delete_studies, ctx, body)
            log.info("%s/%s: deleted studies %s", md["namespace"], md["name"], ", ".join(deleted) or "(none)")
        except Exception as exc:  # noqa: BLE001 - logged; the run still goes
            log.warning("%s/%s: studies not deleted (storage unavailable): %s", md["namespace"], md["name"], exc)
    ops = finalizers.patch_to(body, hold=False)
    if ops is not None:
        ctx.kube.patch_run(md["namespace"], md["name"], ops)
