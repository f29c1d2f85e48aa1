"""Polling the control plane until something holds, with what was last seen when it never does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60,
             diagnose: Callable[[], str] | None = None, interval: float = 0.3) -> Any:
    """Call `check` until it returns something truthy (a 404 counts as not yet) and return it;
    on timeout fail naming `what`, the last value and the `diagnose()` text."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except ApiException as exc:
            if exc.status != 404:
                raise
            last = None
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last={last!r}\n"
                         f"{diagnose() if diagnose else ''}")
