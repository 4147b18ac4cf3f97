"""Native libraries' stderr lines become log records (app/nativelog.py), in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_lines_written_to_fd_2_come_out_as_json_records_and_bursts_are_capped() -> None:
    script = textwrap.dedent(
        """
        import ctypes, logging, os, sys
        sys.path.insert(0, sys.argv[1])
        from app import logging_setup, nativelog
        reader = nativelog.capture_stderr(per_second=5)
        logging_setup.configure("INFO", json_logs=True)
        libc = ctypes.CDLL(None)
        for k in range(12):  # as libtiff's fprintf(stderr, ...) would
            libc.dprintf(2, b"TIFFReadDirectory: Warning, unknown field with tag %d\\n", k)
        logging.getLogger("app.test").info("a record of our own")
        print("python's own stderr", file=sys.stderr)
        sys.stderr.flush()
        os.close(2)
        reader.join(10)
        logging.getLogger("app.test").info("done")
        """
    )
    out = subprocess.run([sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    plain = [line for line in lines if not line.startswith("{")]
    assert plain == ["python's own stderr"]  # Python's own stream still reaches the original stderr
    records = [json.loads(line) for line in lines if line.startswith("{")]
    native = [r["msg"] for r in records if r["logger"] == "native.stderr"]
    assert native[:5] == [f"TIFFReadDirectory: Warning, unknown field with tag {k}" for k in range(5)]
    assert native[5:] == ["7 more native stderr lines suppressed"]  # the rest of the burst, counted
    assert [r["msg"] for r in records if r["logger"] == "app.test"] == ["a record of our own", "done"]
