"""Name worker threads at the OS level, so `top -H`, `ps -L`, py-spy and /proc show their role.

Python 3.11 keeps ``Thread.name`` to itself; Linux takes a thread's name (15 bytes) through
``/proc/self/task/<tid>/comm``. Used as a ``ThreadPoolExecutor`` initializer; a no-op elsewhere.
The benchmark reads these names to split the service's CPU time by role (decode, inference, loop).
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path


def name_os_thread() -> None:
    """Give the calling thread's OS name its Python name (e.g. ``decode_0``, ``infer_1``)."""
    comm = Path(f"/proc/self/task/{threading.get_native_id()}/comm")
    with contextlib.suppress(OSError):
        comm.write_bytes(threading.current_thread().name.encode()[:15])
