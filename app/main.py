"""The app factory and its lifespan: load models at start, drain and unload at stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import admin, assessment, docs, errors, gate, system
from app.api.fastpath import UtilityFastPath
from app.assessor import Assessor
from app.decodebudget import return_memory_to_os
from app.middleware import RequestContextMiddleware
from app.registry import ModelRegistry
from app.settings import Settings, get_settings


def on_sighup(action: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """Run ``action`` on SIGHUP (reload the models, as nginx re-reads its config); returns the undo.

    A no-op where the signal cannot be caught here (not the main thread, or no SIGHUP).
    """
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task] = set()

    def fire() -> None:
        task = loop.create_task(action())
        running.add(task)
        task.add_done_callback(running.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, fire)
    except (AttributeError, NotImplementedError, RuntimeError, ValueError):
        return lambda: None
    return lambda: loop.remove_signal_handler(signal.SIGHUP)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        return_memory_to_os()  # a large decode's buffers go back to the OS when it ends
        registry = ModelRegistry(settings)
        app.state.registry = registry
        app.state.assessor = Assessor(registry, settings.decode_threads)
        await registry.load_all()
        undo_sighup = on_sighup(registry.reload_all)
        try:
            yield
        finally:
            undo_sighup()
            await registry.close()
            app.state.assessor.close()

    app = FastAPI(
        title="image-utility",
        version="0.1.0",
        summary="Is this image still useful for machines? Answers before the image reaches a vision model.",
        lifespan=lifespan,
        docs_url=None,  # served from the package's own assets (app/api/docs.py)
        redoc_url=None,
    )
    app.state.settings = settings
    app.include_router(assessment.router)
    app.include_router(system.router)
    app.include_router(gate.router)
    docs.install(app)
    if settings.admin_token:
        app.include_router(admin.router)
    errors.install(app)
    app.add_middleware(UtilityFastPath)  # inside RequestContextMiddleware: ids, body limit, metrics, logs
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes, access_log=settings.access_log)
    return app
