"""Object-store URIs, as the contract sees them: which URIs are remote, how a run's output prefix
is built, where a pod finds its credentials, and how a place is named in an error.

No I/O here (the operator imports this module and has no pyarrow): the trainer's `nova_trainer.store`
does the reading and writing, through pyarrow.fs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from nova.spec import ObjectStoreSpec, ResolvedRun

# The schemes pyarrow.fs serves. s3 is tested against a real S3-compatible server; gs and az go
# through the same code and pyarrow's own clients, untested here (no server of theirs on loopback).
SCHEMES = ("s3", "gs", "az")
TESTED_SCHEMES = ("s3",)

# The standard names of the keys inside the credentials Secret (and of the local environment).
ACCESS_KEY = "AWS_ACCESS_KEY_ID"
SECRET_KEY = "AWS_SECRET_ACCESS_KEY"
SESSION_TOKEN = "AWS_SESSION_TOKEN"
CREDENTIAL_KEYS = (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
# In a pod, data and output may use different Secrets: each gets its own prefix.
ROLE_PREFIX = {"data": "NOVA_DATA_", "output": "NOVA_OUTPUT_"}


@dataclass(frozen=True)
class Location:
    scheme: str  # "s3", "gs", "az"
    bucket: str
    key: str  # no leading or trailing slash; "" for the bucket's root

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}" if self.key else f"{self.scheme}://{self.bucket}"

    @property
    def path(self) -> str:
        """pyarrow.fs's path: bucket/key."""
        return f"{self.bucket}/{self.key}" if self.key else self.bucket


def is_remote(uri: str | None) -> bool:
    return bool(uri) and "://" in str(uri) and str(uri).split("://", 1)[0].lower() in SCHEMES


def parse(uri: str) -> Location:
    """`s3://bucket/some/prefix/` -> Location('s3', 'bucket', 'some/prefix'); a clear error otherwise."""
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"'{uri}' is not an object-store URI ({', '.join(s + '://' for s in SCHEMES)})")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"'{uri}' names no bucket ({scheme}://bucket/prefix)")
    return Location(scheme, bucket, key.strip("/"))


def join(uri: str, *parts: str) -> str:
    """Append path parts to a URI or a local path, with one slash between each."""
    out = uri.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def symbol_folder(symbol: str) -> str:
    """The folder of one symbol's model under the run's output: the symbol itself (symbols are
    restricted to [A-Za-z0-9._^=-], none of which is a path separator)."""
    return symbol


def run_prefix(output_uri: str, namespace: str, name: str) -> str:
    """Where one run's models go under an object-store output.uri: <uri>/<namespace>/<run>, so two
    runs writing to the same bucket never overwrite each other's models."""
    return join(output_uri, namespace, name)


def describe(uri: str, store: ObjectStoreSpec) -> str:
    """'bucket B at endpoint E' for error messages: never a credential."""
    loc = parse(uri)
    where = store.endpoint or (f"{loc.scheme.upper()} region {store.region}" if store.region
                               else f"the default {loc.scheme.upper()} endpoint")
    return f"bucket '{loc.bucket}' at {where}"


def env_name(role: str, key: str) -> str:
    """The pod's environment variable for a credential key of a role (data or output)."""
    return ROLE_PREFIX[role] + key


def secret_env(role: str, secret: str) -> list[dict]:
    """The env entries that give a pod the credentials of `secret` (valueFrom, never the value)."""
    return [{"name": env_name(role, key),
             "valueFrom": {"secretKeyRef": {"name": secret, "key": key,
                                            **({"optional": True} if key == SESSION_TOKEN else {})}}}
            for key in CREDENTIAL_KEYS]


def model_root(run: ResolvedRun, local_dir: str | os.PathLike[str]) -> str:
    """Where a run's models go: the run-scoped prefix of an object-store output.uri, else the run's
    local output folder (already the run's own: runs/<name>, or /output/<namespace>/<run> in a pod)."""
    uri = run.spec.output.uri
    if uri and is_remote(uri):
        return run_prefix(uri, run.namespace, run.name)
    return str(local_dir)


def local_dir(run: ResolvedRun, out: str | None = None) -> str:
    """The local folder of a run (run.json, logs, SQLite, summary.json): --out, else a local
    output.uri, else runs/<name>. An object-store output.uri is never a local folder."""
    uri = run.spec.output.uri
    return out or (uri if uri and not is_remote(uri) else f"runs/{run.name}")
