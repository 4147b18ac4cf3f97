"""Container health probe: exit 0 when the service's /readyz answers 200, else 1 with the reason.

Docker's HEALTHCHECK and compose run it inside the container (stdlib only, no curl in the image):
    python /opt/utility/healthcheck.py
It asks 127.0.0.1 on ``UTILITY_PORT`` (default 8000), the port the service listens on.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("UTILITY_PORT", "8000")
    path = sys.argv[1] if len(sys.argv) > 1 else "/readyz"
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=float(os.environ.get("UTILITY_HEALTHCHECK_TIMEOUT_S", "2"))) as resp:
            sys.stdout.write(f"{url}: {resp.status}\n")
            return 0 if resp.status == 200 else 1
    except urllib.error.HTTPError as exc:  # 503 while models load, or with no model at all
        body = exc.read(300).decode("utf-8", "replace")
        sys.stdout.write(f"{url}: {exc.code} {body}\n")
    except (OSError, ValueError) as exc:  # refused, timed out, bad port
        sys.stdout.write(f"{url}: {exc}\n")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
