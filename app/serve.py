"""``image-utility serve``: run the HTTP service."""

from __future__ import annotations

import argparse
import logging

from pydantic import ValidationError

from app import logging_setup, nativelog
from app.settings import Settings, describe_errors
from app.usage import Parser, UsageError

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = Parser(prog="image-utility serve", description="Serve every model in a folder over HTTP.")
    p.add_argument("--host", help="bind address (UTILITY_HOST, default 0.0.0.0)")
    p.add_argument("--port", type=int, help="port (UTILITY_PORT, default 8000)")
    p.add_argument("--models-dir", help="folder of model folders (UTILITY_MODELS_DIR, default models)")
    return p


FLAGS = {"host": "--host", "port": "--port", "models_dir": "--models-dir"}


def load_settings(args: argparse.Namespace) -> Settings:
    """The settings, options over environment; a bad value is a :class:`UsageError` naming it."""
    overrides = {k: getattr(args, k) for k in FLAGS if getattr(args, k) is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise UsageError("; ".join(describe_errors(exc, {k: FLAGS[k] for k in overrides}))) from None


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    settings = load_settings(args)
    if settings.log_json:  # native libraries' stderr lines (libtiff) become JSON records too
        nativelog.capture_stderr()
    logging_setup.configure(settings.log_level, settings.log_json)
    import uvicorn

    from app import server
    from app.main import create_app

    uvicorn.run(create_app(settings), **server.options(settings))
    return 0
