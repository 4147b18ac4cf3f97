"""``image-utility serve``: run the HTTP service."""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from app import logging_setup
from app.settings import Settings

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="image-utility serve", description="Serve every model in a folder over HTTP.")
    p.add_argument("--host", help="bind address (UTILITY_HOST, default 0.0.0.0)")
    p.add_argument("--port", type=int, help="port (UTILITY_PORT, default 8000)")
    p.add_argument("--models-dir", help="folder of model folders (UTILITY_MODELS_DIR, default models)")
    return p


def load_settings(args: argparse.Namespace) -> Settings:
    overrides = {
        k: v for k, v in {"host": args.host, "port": args.port, "models_dir": args.models_dir}.items() if v is not None
    }
    return Settings(**overrides)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        settings = load_settings(args)
    except ValidationError as exc:
        sys.stderr.write(f"image-utility serve: invalid settings (UTILITY_* environment):\n{exc}\n")
        return 2
    logging_setup.configure(settings.log_level, settings.log_json)
    import uvicorn

    from app import server
    from app.main import create_app

    uvicorn.run(create_app(settings), **server.options(settings))
    return 0
