"""The models being served: load, warm up, batch, reload and unload them. Knows nothing of HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from app import telemetry
from app.batcher import Batcher
from app.contract import find_model_dirs
from app.engine import UtilityModel
from app.settings import Settings

log = logging.getLogger(__name__)


class UnknownModelError(KeyError):
    """No loaded model has that name."""


class NotReadyError(RuntimeError):
    """No model is loaded at all."""


class ReloadError(RuntimeError):
    """A reload failed; the old model keeps serving."""


@dataclass
class ServedModel:
    model: UtilityModel
    batcher: Batcher

    @property
    def name(self) -> str:
        return self.model.name


def default_model_name(configured: str | None, names: Iterable[str]) -> str | None:
    """The model a request that names none gets: the configured one, else the first by name."""
    return configured or min(names, default=None)


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models: dict[str, ServedModel] = {}
        self.failures: dict[str, str] = {}
        self._reload_lock = asyncio.Lock()

    async def load_all(self) -> None:
        folders = find_model_dirs(self.settings.models_dir)
        if not folders:
            log.warning("no model folders found in %s", self.settings.models_dir)
        for folder in folders:
            try:
                self.models[folder.name] = await self._load(folder)
            except Exception as exc:  # one broken folder must not stop the others
                self.failures[folder.name] = f"{type(exc).__name__}: {exc}"
                telemetry.MODEL_READY.labels(folder.name).set(0)
                log.error("model %s failed to load: %s", folder.name, exc)

    async def _load(self, folder: Path) -> ServedModel:
        s = self.settings
        model = await asyncio.to_thread(UtilityModel, folder.name, folder, s.providers, s.intra_op_threads)
        if s.warmup:
            await asyncio.to_thread(model.warmup, tuple(sorted({1, s.max_batch_size})))
        batcher = Batcher(
            model.predict,
            max_batch_size=s.max_batch_size,
            max_wait_ms=s.max_wait_ms,
            queue_size=s.queue_size,
            instances=s.inference_instances(model.provider),
            observer=telemetry.batch_observer(model.name),
        )
        batcher.start()
        telemetry.MODEL_INFO.labels(model.name, model.version, model.provider).set(1)
        telemetry.MODEL_READY.labels(model.name).set(1)
        log.info("model %s version %s ready on %s", model.name, model.version, model.provider)
        return ServedModel(model, batcher)

    @property
    def default_name(self) -> str | None:
        return default_model_name(self.settings.default_model, self.models)

    def get(self, name: str | None) -> ServedModel:
        if not self.models:
            raise NotReadyError(self.readiness()[1])
        key = name or self.default_name
        if key not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            raise UnknownModelError(f"model {key!r} is not loaded (loaded: {known})")
        return self.models[key]

    def readiness(self) -> tuple[bool, str]:
        if self.failures:
            return False, "; ".join(f"model {n} failed to load: {why}" for n, why in sorted(self.failures.items()))
        if not self.models:
            return False, f"no models found in {self.settings.models_dir}"
        default = self.default_name
        if default not in self.models:
            return False, f"default model {default!r} is not loaded"
        return True, "ready"

    async def reload(self, name: str) -> ServedModel:
        """Load the folder again and swap it in; in-flight requests finish on the old one."""
        folder = self.settings.models_dir / name
        async with self._reload_lock:
            try:
                fresh = await self._load(folder)
            except Exception as exc:  # the old model keeps serving, as in Triton
                log.error("reload of %s failed, old model kept: %s", name, exc)
                raise ReloadError(f"reload of {name!r} failed: {type(exc).__name__}: {exc}") from exc
            old = self.models.get(name)
            self.models[name] = fresh
            self.failures.pop(name, None)
        if old is not None:
            if old.model.version != fresh.model.version or old.model.provider != fresh.model.provider:
                telemetry.MODEL_INFO.remove(name, old.model.version, old.model.provider)
            await old.batcher.stop()
        return fresh

    async def reload_all(self) -> None:
        """Reload every model folder (SIGHUP); a model whose reload fails keeps its old version."""
        for folder in find_model_dirs(self.settings.models_dir):
            with contextlib.suppress(ReloadError):  # logged by reload()
                await self.reload(folder.name)

    async def close(self) -> None:
        await asyncio.gather(*(m.batcher.stop() for m in self.models.values()))
