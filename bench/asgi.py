"""The service as a module-level ASGI app (settings from ``UTILITY_*``), for servers that import one."""

from app.main import create_app

app = create_app()
