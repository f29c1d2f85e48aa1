"""Logging set-up shared by the trainer's commands: every line passes through the password mask."""

from __future__ import annotations

import logging
import sys

from nova.secrets import mask


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


def setup(level: str = "INFO", stream=sys.stderr, prefix: str = "") -> None:
    import warnings

    import optuna

    # Heartbeats and retries are marked experimental in Optuna; we rely on them knowingly.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Optuna logs through its own stderr handler by default; route it through ours (and the mask).
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(MaskingFormatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("optuna", "sqlalchemy", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
