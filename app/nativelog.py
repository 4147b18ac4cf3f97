"""What native libraries write straight to file descriptor 2, turned into log records.

libtiff (inside Pillow) prints its warnings and errors with ``fprintf(stderr, ...)``: over a corpus
of corrupt TIFFs, thousands of bare lines that break a JSON log stream. :func:`capture_stderr`
points fd 2 at a pipe, keeps Python's own ``sys.stderr`` on the original stream, and a reader thread
logs each native line as a WARNING of the ``native.stderr`` logger, at most ``per_second`` lines a
second (the rest are counted and reported once the burst is over).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

log = logging.getLogger("native.stderr")


class _Limiter:
    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self.window = 0.0
        self.sent = 0
        self.dropped = 0

    def report(self) -> None:
        if self.dropped:
            log.warning("%d more native stderr lines suppressed", self.dropped)
        self.dropped = 0

    def admit(self) -> bool:
        now = time.monotonic()
        if now - self.window >= 1.0:
            self.report()
            self.window, self.sent = now, 0
        if self.sent < self.per_second:
            self.sent += 1
            return True
        self.dropped += 1
        return False


def _pump(fd: int, limiter: _Limiter) -> None:
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        pending = b""
        while chunk := pipe.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            if len(pending) > 65536:  # no newline in sight: a line of its own
                lines.append(pending)
                pending = b""
            for line in lines:
                text = line.decode("utf-8", "replace").rstrip()
                if text and limiter.admit():
                    log.warning("%s", text)
    limiter.report()


def capture_stderr(per_second: int = 20) -> threading.Thread | None:
    """Route fd 2 into the log; call before logging is configured. Returns the reader thread (it
    ends when fd 2 is closed), None if fd 2 is not open."""
    try:
        original = os.dup(2)
    except OSError:
        return None
    sys.stderr.flush()
    sys.stderr = open(original, "w", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    reader = threading.Thread(target=_pump, args=(read_end, _Limiter(per_second)), name="native-stderr", daemon=True)
    reader.start()
    return reader
