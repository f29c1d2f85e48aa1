"""Which device a run really uses, and the RMM pool.

XGBoost silently trains on CPU when asked for `cuda` without a GPU, so we detect the GPU ourselves
and record what was used. RMM: `import rmm` works without a GPU and fails on the first allocation,
so the allocation is guarded, not only the import. The PyPI xgboost wheel is built without RMM
(`build_info()['USE_RMM']`), so there the pool serves cupy/cudf allocations and XGBoost's own
allocations go through its CUDA async pool; the status string says which one was used."""

from __future__ import annotations

import ctypes
import functools
import logging
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)

_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def parse_quantity(value: str) -> int:
    """Kubernetes-style byte quantity ('8Gi', '512M') to bytes."""
    m = re.fullmatch(r"([0-9.]+)([KMGT]i?)?", value.strip())
    if not m:
        raise ValueError(f"'{value}' is not a byte quantity like 8Gi or 512Mi")
    return int(float(m.group(1)) * _UNITS[m.group(2) or ""])


@functools.cache
def gpu_count() -> int:
    """CUDA devices visible to this process (0 when there is no driver)."""
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0:
            return count.value
        return 0
    return 0


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cuda" or "cpu": what training really uses
    reason: str


def resolve_device(requested: str) -> DeviceChoice:
    gpus = gpu_count()
    if requested == "cpu":
        return DeviceChoice("cpu", "model.device is cpu")
    if gpus > 0:
        return DeviceChoice("cuda", f"{gpus} CUDA device(s) found")
    if requested == "cuda":
        log.warning("model.device is cuda but no CUDA device is visible; training on CPU")
        return DeviceChoice("cpu", "model.device is cuda but no CUDA device is visible: fell back to CPU")
    return DeviceChoice("cpu", "no CUDA device found (model.device auto)")


_rmm_status: str | None = None


def init_rmm(enabled: bool, device: str, initial_pool_size: str, maximum_pool_size: str) -> str:
    """Initialise the RMM pool once per process; return what is in use, in words."""
    global _rmm_status
    if _rmm_status is not None:
        return _rmm_status
    if not enabled:
        _rmm_status = "disabled by gpu.rmm.enabled"
    elif device != "cuda":
        _rmm_status = "not used: training on CPU"
    else:
        _rmm_status = _start_pool(parse_quantity(initial_pool_size), parse_quantity(maximum_pool_size))
    log.info("RMM: %s", _rmm_status)
    return _rmm_status


def _start_pool(initial: int, maximum: int) -> str:  # pragma: no cover - needs a GPU
    try:
        import rmm
    except ImportError:
        return "not installed (pip install nova[gpu]); XGBoost uses its default CUDA allocator"
    import xgboost as xgb

    try:
        rmm.reinitialize(pool_allocator=True, initial_pool_size=initial, maximum_pool_size=maximum)
        rmm.DeviceBuffer(size=1024)  # the first allocation is what fails without a usable GPU
    except Exception as exc:
        return f"unavailable ({type(exc).__name__}: {exc}); XGBoost uses its default CUDA allocator"
    cupy_note = _route_cupy_through_rmm()
    if xgb.build_info().get("USE_RMM"):
        xgb.set_config(use_rmm=True)
        return f"pool {initial >> 20} MiB..{maximum >> 20} MiB, XGBoost allocates through RMM{cupy_note}"
    xgb.set_config(use_cuda_async_pool=True)
    return (f"pool {initial >> 20} MiB..{maximum >> 20} MiB{cupy_note}; this XGBoost build has no RMM, "
            "so its own allocations use CUDA's async pool (use_cuda_async_pool=True)")


def _route_cupy_through_rmm() -> str:  # pragma: no cover - needs a GPU
    """cupy allocates from its own pool unless told to use RMM's."""
    try:
        import cupy
        from rmm.allocators.cupy import rmm_cupy_allocator
    except ImportError:
        return ""
    cupy.cuda.set_allocator(rmm_cupy_allocator)
    return " (cupy allocations too)"
