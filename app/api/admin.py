"""Admin routes, mounted only when UTILITY_ADMIN_TOKEN is set: reload a model without downtime."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Path

from app.api.deps import RegistryDep, SettingsDep
from app.api.schemas import error_responses
from app.registry import ReloadError

router = APIRouter(prefix="/admin", tags=["admin"])


async def require_token(settings: SettingsDep, authorization: Annotated[str | None, Header()] = None) -> None:
    expected = f"Bearer {settings.admin_token}"
    if not authorization or not secrets.compare_digest(authorization.encode(), expected.encode()):
        raise HTTPException(status_code=401, detail="admin token required", headers={"WWW-Authenticate": "Bearer"})


@router.post(
    "/models/{name}/reload",
    dependencies=[Depends(require_token)],
    summary="Load the model folder again and swap it in; in-flight requests finish on the old one",
    responses=error_responses(401, 404, 409, e404="No model folder by that name"),
)
async def reload_model(registry: RegistryDep, name: Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,128}$")]) -> dict:
    if name.startswith(".") or not (registry.settings.models_dir / name).is_dir():
        raise HTTPException(status_code=404, detail=f"no model folder named {name!r}")
    try:
        served = await registry.reload(name)
    except ReloadError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    return {"reloaded": name, "version": served.model.version, "provider": served.model.provider}
