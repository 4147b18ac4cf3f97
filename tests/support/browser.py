"""Headless Chromium (Debian's ``chromium``) on loopback only: the page's DOM after its scripts ran, a screenshot.

Every host but 127.0.0.1 resolves to nothing, so a page that still fetched a CDN would render blank.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--virtual-time-budget=15000",  # run the page's timers and fetches to completion, then dump
)


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(url: str, profile: Path, *extra: str) -> str:
    """Load ``url`` in a fresh profile; stdout (the DOM with ``--dump-dom``)."""
    binary = chromium_binary()
    assert binary, "chromium is not installed"
    cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *extra, url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dom(url: str, profile: Path) -> str:
    return chromium(url, profile, "--dump-dom")


def screenshot(url: str, profile: Path, out: Path, size: str = "1280,1600") -> Path:
    chromium(url, profile, f"--screenshot={out}", f"--window-size={size}", "--hide-scrollbars")
    return out
