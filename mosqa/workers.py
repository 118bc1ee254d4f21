"""Worker processes that never outlive the command that started them.

A pool's worker blocks on its next task or computes its current one; when the parent is killed (SIGKILL,
an out-of-memory kill, a closed terminal) nothing tells it, so it runs on, holding cores and memory, for
as long as its task lasts. Every pool's initializer calls `die_with_parent` first: a daemon thread waits
on the parent's sentinel (a pipe the parent holds open while it lives) and ends the worker the moment the
parent is gone. Plain multiprocessing, so it works with fork and spawn, on every platform.
"""

import multiprocessing
import os
import threading
from multiprocessing.connection import wait


def die_with_parent() -> None:
    """In a worker process: exit as soon as the parent process ends. Does nothing in a main process."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)  # at once: no cleanup may wait on a parent that is gone

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
