"""Set-up of the worker processes of a sweep's local cluster: a dask preload (``Worker(preload=[...])``).

Takes: the dask ``Worker`` being started.  Gives: ``dask_setup(worker)``, which makes the worker process ignore
SIGINT and limits BLAS to one thread (threadpoolctl).  A Ctrl-C in a terminal is sent to every process of the foreground
process group, the local cluster's worker processes included; they leave it to the client, which cancels the
running trials, keeps the finished ones and closes the cluster (without this, each worker process would also
die of it and print its own traceback).  Workers of a cluster started elsewhere (``--scheduler``) are not touched.
"""

from __future__ import annotations

import signal
import threading


def dask_setup(worker) -> None:
    if threading.current_thread() is threading.main_thread():  # the worker process's event loop runs there
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    from symbp.sweep.engine import _pin_threads

    _pin_threads()
