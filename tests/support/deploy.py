"""Helpers for the deploy tests (no tests here): the Dockerfile read as Docker reads it, tools, a running service.

There is no Docker engine on these machines, so the deploy tests check everything around it: the files with
the tools that validate them (hadolint, docker-compose, promtool, nginx, kubernetes-validate), and the image's
exact entry command, health probe, Prometheus and load balancer run for real on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bench.service import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent


def need_tool(name: str, hint: str) -> str:
    """Path of a command-line tool: the venv's first, then PATH. Missing: a failure in CI, a skip elsewhere."""
    found = shutil.which(name, path=os.pathsep.join([str(BIN), os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if found:
        return found
    message = f"{name} is not installed ({hint}); .ci/run installs it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run(cmd: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)


# ----------------------------------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def expand(self, text: str) -> str:
        """${NAME} replaced by the default of the stage's ARG NAME=default."""
        defaults = dict(a.partition("=")[::2] for a in self.all("ARG"))
        return re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m.group(1), m.group(0)), text)

    def env(self) -> dict[str, str]:
        """ENV key=value pairs in order ($PATH-style references are left as written)."""
        out: dict[str, str] = {}
        for args in self.all("ENV"):
            for token in shlex.split(args):
                key, _, value = token.partition("=")
                out[key] = value
        return out

    def exec_form(self, keyword: str) -> list[str]:
        args = self.last(keyword)
        assert args is not None, f"stage {self.name} has no {keyword}"
        value = json.loads(args)  # exec form only: no shell between Docker and the process
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{keyword} {args}"
        return value


def parse_dockerfile(path: Path = ROOT / "Dockerfile") -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with line continuations joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert m, line
            base = re.sub(r"\$\{(\w+)\}", lambda g: args.get(g.group(1), g.group(0)), m.group(1))
            stages.append(Stage(name=m.group(2) or str(len(stages)), base=base))
        elif not stages and keyword == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def stage(name: str) -> Stage:
    stages = {s.name: s for s in parse_dockerfile()[1]}
    assert name in stages, f"no stage {name!r} in the Dockerfile (has {sorted(stages)})"
    return stages[name]


# ----------------------------------------------------------------------------------------------- the service


def console_script_dir(tmp_path: Path) -> Path:
    """A folder holding the project's console scripts, as `pip install` writes them into the image's venv.

    The venv's own copy is used when the project is installed there (CI: `pip install -e .[dev]`); otherwise
    the wrapper is written from pyproject's [project.scripts], the same two lines pip generates.
    """
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    if all((BIN / name).exists() for name in scripts):
        return BIN
    out = tmp_path / "bin"
    out.mkdir(exist_ok=True)
    for name, target in scripts.items():
        module, _, func = target.partition(":")
        script = out / name
        script.write_text(f"#!{sys.executable}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
        script.chmod(0o755)
    return out


def container_env(st: Stage, bin_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment the image's ENV lines give the entry command, mapped onto this machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UTILITY_")}
    for key, value in st.env().items():
        if key == "PATH":  # PATH=/opt/venv/bin:$PATH: the image's venv comes first
            venv_bin = value.split(":")[0]
            assert venv_bin.endswith("/bin"), value
            value = f"{bin_dir}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        env[key] = value
    env["PYTHONPATH"] = str(ROOT)  # the image installs app/ into its venv; here it is imported from the tree
    env.update(overrides)
    return env


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen | None = None, every: float = 0.25):
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            log = getattr(proc, "log_path", None)
            out = log.read_text(errors="replace") if log else ""
            raise AssertionError(f"{what}: the process exited with {proc.returncode}:\n{out[-3000:]}")
        try:
            last = check()
            if last:
                return last
        except (httpx.TransportError, OSError) as exc:
            last = exc
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


@contextlib.contextmanager
def running(cmd: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen]:
    """A process whose output goes to a file in cwd (a pipe nobody reads would fill and block its logging)."""
    log_path = cwd / f"{Path(cmd[0]).name}-{time.monotonic_ns()}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log_path = log_path  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextlib.contextmanager
def image_entry_command(
    models_dir: Path, tmp_path: Path, target: str = "cpu", port: int | None = None, **settings: str
) -> Iterator[tuple[str, dict[str, str]]]:
    """The image's ENTRYPOINT + CMD, with its ENV, started outside Docker on 127.0.0.1; yields (base URL, env).

    ``settings`` are further UTILITY_* variables, as `docker run -e` or compose's `environment` would give.
    """
    st = stage(target)
    argv = st.exec_form("ENTRYPOINT") + st.exec_form("CMD")
    port = port or free_port()
    # The container binds 0.0.0.0 on its own network; here the address is loopback and the port a free one.
    env = container_env(st, console_script_dir(tmp_path), UTILITY_HOST="127.0.0.1", UTILITY_PORT=str(port), **settings)
    env["UTILITY_MODELS_DIR"] = str(models_dir)  # the image's /models, here a folder with a real tiny model
    exe = shutil.which(argv[0], path=env["PATH"])
    assert exe, f"{argv[0]} not found on the image's PATH"
    base = f"http://127.0.0.1:{port}"
    with running([exe, *argv[1:]], env, cwd=tmp_path) as proc:
        wait_until(lambda: httpx.get(f"{base}/healthz", timeout=1).status_code == 200, 60, "service alive", proc)
        yield base, env
