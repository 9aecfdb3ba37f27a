"""Set-up of the worker processes of a sweep's local cluster: a dask preload (``Worker(preload=[...])``).

Takes: the dask ``Worker`` being started.  Gives: ``dask_setup(worker)``, which makes the worker process ignore
SIGINT and limits BLAS to one thread (threadpoolctl), and ``pin_threads()``, that limit alone, which the trial
functions of ``symbp.sweep.engine`` also call (it does nothing outside a dask worker).  A Ctrl-C in a terminal
is sent to every process of the foreground process group, the local cluster's worker processes included; they leave
it to the client, which cancels the running trials, keeps the finished ones and closes the cluster (without this,
each worker process would also die of it and print its own traceback).  Workers of a cluster started elsewhere
(``--scheduler``) are not touched.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_LIMITS = []


def dask_setup(worker) -> None:
    if threading.current_thread() is threading.main_thread():  # the worker process's event loop runs there
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    pin_threads()


def pin_threads() -> None:
    """One BLAS thread in this process, when it is a dask worker (not when a trial runs in the caller's own
    process, whose thread pools are left as they are).  Numba needs nothing: symbp's kernels are not parallel, and
    numba's thread count (NUMBA_NUM_THREADS=1 on a local cluster) is left to the environment, as starting
    numba's threads here would fix it for the life of the process."""
    if _LIMITS:
        return
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return
    with contextlib.suppress(Exception):
        import threadpoolctl

        _LIMITS.append(threadpoolctl.threadpool_limits(limits=1))
    _LIMITS.append(None)
