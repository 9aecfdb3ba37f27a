"""Facts about the machine a benchmark ran on, and the measurements that depend on it alone.

Takes: nothing but the running process (and a thread count).  Gives: ``environment()`` (a JSON-able dict:
date, Python and library versions, BLAS libraries from threadpoolctl, CPU model and flags, core counts, load
average), ``matmul_peak(dtype, size, ...)`` (best-of-N GFLOP/s of a square matmul with BLAS limited to
``threads`` threads), ``limit_threads(threads)`` (a context manager applying a thread count to every BLAS
through threadpoolctl) and ``MemoryProbe`` helpers reading and resetting the process's peak resident set size.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

LIBRARIES = (
    "numpy",
    "scipy",
    "numba",
    "llvmlite",
    "sympy",
    "threadpoolctl",
    "matplotlib",
    "rich",
    "torch",
    "jax",
    "jaxlib",
    "pytensor",
)


def _cpuinfo() -> dict:
    """CPU model name, vendor/family/model numbers and the SIMD flags BLAS cares about (/proc/cpuinfo)."""
    fields = {"model name": "model", "vendor_id": "vendor", "cpu family": "family", "model": "model_number"}
    info: dict = {
        "model": None,
        "vendor": None,
        "family": None,
        "model_number": None,
        "avx2": None,
        "avx512f": None,
    }
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in fields and info[fields[key]] is None:
            info[fields[key]] = value.strip()
        elif key == "flags" and info["avx2"] is None:
            flags = set(value.split())
            info["avx2"], info["avx512f"] = "avx2" in flags, "avx512f" in flags
        elif not key and info["model"] is not None:
            break  # end of the first processor's block
    info["model"] = info["model"] or platform.processor() or platform.machine()
    return info


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def environment() -> dict:
    """Everything recorded with the results about where they were measured."""
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS so threadpoolctl lists it)
    import threadpoolctl

    versions = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    blas = [
        {
            k: d.get(k)
            for k in (
                "user_api",
                "internal_api",
                "prefix",
                "version",
                "num_threads",
                "threading_layer",
                "architecture",
                "filepath",
            )
        }
        for d in threadpoolctl.threadpool_info()
    ]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python_executable": sys.executable,
        "versions": versions,
        "blas": blas,
        "cpu": _cpuinfo(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "git_commit": _git_commit(),
    }


def usable_cores() -> int:
    """The CPU cores this process may run on: its affinity mask where the OS has one, else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@contextlib.contextmanager
def limit_threads(threads: int):
    """Limit every BLAS loaded so far (numpy's and scipy's OpenBLAS, MKL, ...) to ``threads`` threads."""
    import threadpoolctl

    with threadpoolctl.threadpool_limits(limits=int(threads), user_api="blas"):
        yield


def matmul_peak(dtype: str = "float64", size: int = 2000, repeats: int = 5, threads: int = 1) -> dict:
    """Best-of-``repeats`` GFLOP/s of square ``A @ B`` into a preallocated output, BLAS at ``threads``."""
    import scipy.linalg  # noqa: F401  (so both OpenBLAS copies are limited)

    rng = np.random.default_rng(0)
    A = rng.standard_normal((size, size)).astype(dtype)
    B = rng.standard_normal((size, size)).astype(dtype)
    C = np.empty((size, size), dtype=dtype)
    times = []
    with limit_threads(threads):
        np.matmul(A, B, out=C)  # warm-up: thread pool, page faults in C
        for _ in range(repeats):
            t0 = time.perf_counter()
            np.matmul(A, B, out=C)
            times.append(time.perf_counter() - t0)
    flops = 2.0 * size**3
    return {
        "dtype": dtype,
        "size": size,
        "threads": int(threads),
        "times": times,
        "gflops": flops / min(times) / 1e9,
    }


# ---------------------------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes() -> int | None:
    """Current resident set size (Linux ``VmRSS``), or None where /proc is missing."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS; False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int | None:
    """Peak resident set size since the last ``reset_peak_rss`` (``VmHWM``), or None."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib * 1024
