"""The one finalizer Nova puts on a run, and only when the run asks for its studies to be deleted
with it (`tuning.storage.keepStudies: false`): every other run goes at once, its children by owner
references. Level-triggered, as controller-runtime's AddFinalizer/RemoveFinalizer: each pass says
what the run's finalizers should be, and a JSON patch guarded by the resourceVersion makes them so.

kopf's deletion handler would do this, but registering one made kopf build and compare a diff base
of every run at every event (a deep copy each), keepStudies or not."""

from __future__ import annotations

from typing import Any

from nova.spec import API_GROUP

FINALIZER = f"{API_GROUP}/studies"


def drops_studies(body: dict[str, Any]) -> bool:
    """The spec asks for the studies to go with the run (the default keeps them)."""
    storage = ((body.get("spec") or {}).get("tuning") or {}).get("storage") or {}
    return storage.get("keepStudies", True) is False


def holds(body: dict[str, Any]) -> bool:
    return FINALIZER in (body["metadata"].get("finalizers") or [])


def patch_to(body: dict[str, Any], hold: bool) -> list[dict[str, Any]] | None:
    """The JSON patch that adds (hold) or removes Nova's finalizer, keeping any other; None when
    there is nothing to change. It fails (422) if the run changed since `body` was read, so a
    finalizer another controller added meanwhile is never dropped; the next event retries."""
    current = list(body["metadata"].get("finalizers") or [])
    if (FINALIZER in current) == hold:
        return None
    wanted = current + [FINALIZER] if hold else [f for f in current if f != FINALIZER]
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": body["metadata"]["resourceVersion"]},
            {"op": "add", "path": "/metadata/finalizers", "value": wanted}]
