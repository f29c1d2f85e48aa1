"""Keeping credentials out of logs, errors, status and model cards."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
_KV_PASSWORD = re.compile(r"(?i)(password\s*=\s*)('[^']*'|\S+)")


def mask_url(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db."""
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


def mask(text: str) -> str:
    """Mask every URL password and `password=...` pair in free text (error messages, logs)."""
    return _KV_PASSWORD.sub(r"\1***", mask_url(text))


def host_of(url: str) -> str:
    """The host:port part of a URL, for error messages."""
    rest = url.partition("://")[2]
    rest = rest.rpartition("@")[2]
    return rest.split("/")[0].split("?")[0] or "localhost"
