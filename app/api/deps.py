"""Shared route dependencies, read from the app state that the lifespan fills.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a
thread hop per dependency per request that cost more CPU than the handler itself.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.assessor import Assessor
from app.registry import ModelRegistry
from app.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def get_assessor(request: Request) -> Assessor:
    return request.app.state.assessor


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
AssessorDep = Annotated[Assessor, Depends(get_assessor)]
