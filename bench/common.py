"""What every benchmark needs: the model under test, real JPEGs at three sizes, machine facts."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import platform
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training.provenance import git_commit

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
BUNDLED_NAME = "utility-classification"
# (label, width, height); the sample photos are ~500x375, so the larger sizes are upscaled.
SIZES = (("224", 224, 224), ("640x480", 640, 480), ("1920x1080", 1920, 1080))
JPEG_QUALITY = 90


def exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the servers we started are stopped by their context managers."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def default_image_source() -> Path | None:
    for candidate in (
        os.environ.get("BENCH_IMAGES"),
        REPO.parent / "shared" / "data" / "imagenet-sample",
        Path("/work/shared/data/imagenet-sample"),
    ):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@dataclass
class ModelUnderTest:
    name: str
    folder: Path  # the Triton-style model folder (name/version/model.onnx)
    source: str  # "bundled" or "stand-in"
    size: int
    precision: str  # "fp32" or "int8", read from the graph

    @property
    def onnx(self) -> Path:
        from app.contract import latest_version_dir

        return latest_version_dir(self.folder) / "model.onnx"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["folder"] = str(self.folder)
        d["onnx"] = str(self.onnx)
        d["onnx_bytes"] = self.onnx.stat().st_size
        return d


def onnx_precision(path: Path) -> str:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    quant_ops = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"}
    return "int8" if any(n.op_type in quant_ops for n in model.graph.node) else "fp32"


def resolve_model(models_dir: Path, work: Path) -> ModelUnderTest:
    """models/utility-classification when it exists, else a random-weight ResNet-18 in ``work``."""
    from app.engine import UtilityModel

    folder = models_dir / BUNDLED_NAME
    source = "bundled"
    if not any(folder.glob("*/model.onnx")):
        from bench.make_model import make_resnet18_folder

        log.warning("%s not found: using the random-weight ResNet-18 stand-in", folder)
        folder = make_resnet18_folder(work / "models", name="resnet18-random", size=224)
        source = "stand-in"
    model = UtilityModel(folder.name, folder, ["CPUExecutionProvider"], 1)
    return ModelUnderTest(folder.name, folder, source, model.spec.size, onnx_precision(model.path))


def model_spec(model: ModelUnderTest):
    """The model's preprocessing, read from its ONNX metadata as the service reads it."""
    from app.engine import UtilityModel

    return UtilityModel(model.name, model.folder, ["CPUExecutionProvider"], 1).spec


def serve_dir(work: Path, folder: Path) -> Path:
    """A models folder holding only ``folder`` (the service serves every folder it finds)."""
    d = work / f"serve-{folder.name}"
    d.mkdir(parents=True, exist_ok=True)
    link = d / folder.name
    if not link.exists():
        link.symlink_to(folder.resolve(), target_is_directory=True)
    return d


def make_jpegs(source: Path | None, out: Path, count: int) -> dict[str, Path]:
    """``count`` real photos re-encoded at each size into ``out/<label>/``; never committed."""
    if source is not None:
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))[:count]
        photos = [Image.open(p).convert("RGB") for p in files]
    else:  # scikit-image's sample photos, when the shared data set is absent
        from skimage import data

        names = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
        photos = [Image.fromarray(getattr(data, n)()).convert("RGB") for n in names]
    dirs = {}
    for label, w, h in SIZES:
        d = out / label
        d.mkdir(parents=True, exist_ok=True)
        for i, photo in enumerate(photos):
            # cover w x h, centre crop: no bars, the aspect ratio of the target
            scale = max(w / photo.width, h / photo.height)
            resized = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.BICUBIC)
            left, top = (resized.width - w) // 2, (resized.height - h) // 2
            buf = io.BytesIO()
            resized.crop((left, top, left + w, top + h)).save(buf, "JPEG", quality=JPEG_QUALITY)
            (d / f"{i:04d}.jpg").write_bytes(buf.getvalue())
        dirs[label] = d
    return dirs


def read_dir(d: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(d.iterdir())]


def real_batch(payloads: list[bytes], spec, n: int) -> np.ndarray:
    """``n`` inputs from the payloads (cycled), prepared as the service prepares a request."""
    from training.predict import preprocess_all  # onnxruntime: not on the load generator's light path

    return preprocess_all([payloads[i % len(payloads)] for i in range(n)], spec)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    return [f for f in wanted if f in flags]


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for pkg in ("onnxruntime-gpu", "onnxruntime", "numpy", "pillow", "fastapi", "uvicorn", "litserve", "httpx"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def machine_info() -> dict:
    import onnxruntime as ort

    from app.settings import Settings

    return {
        "cpu": cpu_model(),
        "cpus_usable": Settings().cpu_count,
        "cpu_flags": cpu_flags(),
        "platform": platform.platform(),
        "onnxruntime_providers_available": ort.get_available_providers(),
        "versions": versions(),
        "git_commit": git_commit(REPO),
        "niceness": os.nice(0),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def dump(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
