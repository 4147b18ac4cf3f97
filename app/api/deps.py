"""Shared route dependencies, read from the app state that the lifespan fills."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.inference import Assessor
from app.registry import ModelRegistry
from app.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def get_assessor(request: Request) -> Assessor:
    return request.app.state.assessor


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
AssessorDep = Annotated[Assessor, Depends(get_assessor)]
