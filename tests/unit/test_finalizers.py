"""Nova's one finalizer: only on runs whose studies go with them, never dropping anyone else's."""

from __future__ import annotations

from nova_operator.finalizers import FINALIZER, drops_studies, holds, patch_to


def run(keep: bool | None = None, finalizers: list[str] | None = None) -> dict:
    storage = {"secretRef": {"name": "db", "key": "url"}}
    if keep is not None:
        storage["keepStudies"] = keep
    md = {"name": "r", "namespace": "ns", "resourceVersion": "42"}
    if finalizers is not None:
        md["finalizers"] = finalizers
    return {"metadata": md, "spec": {"tuning": {"storage": storage}}}


def test_only_keep_studies_false_drops_them():
    assert drops_studies(run(keep=False))
    assert not drops_studies(run(keep=True)) and not drops_studies(run()) and not drops_studies({"metadata": {}})


def test_adding_keeps_the_other_finalizers_and_is_guarded_by_the_resource_version():
    ops = patch_to(run(keep=False, finalizers=["other.io/x"]), hold=True)
    assert ops == [{"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
                   {"op": "add", "path": "/metadata/finalizers", "value": ["other.io/x", FINALIZER]}]


def test_removing_keeps_the_other_finalizers():
    body = run(finalizers=[FINALIZER, "other.io/x"])
    assert holds(body)
    assert patch_to(body, hold=False)[1]["value"] == ["other.io/x"]


def test_nothing_to_do_is_no_patch():
    assert patch_to(run(), hold=False) is None
    assert patch_to(run(finalizers=[FINALIZER]), hold=True) is None
