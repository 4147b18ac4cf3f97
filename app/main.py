"""The app factory and its lifespan: load models at start, drain and unload at stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import admin, errors, gate, system, utility
from app.inference import Assessor
from app.middleware import RequestContextMiddleware
from app.registry import ModelRegistry
from app.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = ModelRegistry(settings)
        app.state.registry = registry
        app.state.assessor = Assessor(registry, settings.decode_threads)
        await registry.load_all()
        try:
            yield
        finally:
            await registry.close()
            app.state.assessor.close()

    app = FastAPI(
        title="image-utility",
        version="0.1.0",
        summary="Is this image still useful for machines? Answers before the image reaches a vision model.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(utility.router)
    app.include_router(system.router)
    app.include_router(gate.router)
    if settings.admin_token:
        app.include_router(admin.router)
    errors.install(app)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    return app
