"""``image-utility``: an ordinary mistake is one line naming what was wrong, exit code 2, no traceback.

Each case runs the real console entry (``python -m app.cli``) in a subprocess, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODELS = str(ROOT / "models")
EVALUATE = ["evaluate", "--manifest", "MANIFEST", "--models-dir", MODELS, "--model", "utility-classification"]

# (argv, environment, what the one line must say); MANIFEST and OUT stand for real folders.
MISTAKES = [
    pytest.param(["train", "LABELS/missing"], {}, "MANIFEST 'LABELS/missing': no such file", id="train-missing"),
    pytest.param(["train"], {}, "MANIFEST: none given", id="train-no-manifest"),
    pytest.param(["train", "MANIFEST", "--epochs", "x"], {}, "argument --epochs: invalid int", id="train-epochs-x"),
    pytest.param(["train", "MANIFEST", "--epochs", "0"], {}, "--epochs 0 is out of range; allowed: >= 1", id="epochs"),
    pytest.param(["train", "OUT"], {}, "holds no manifest.csv", id="train-folder-without-manifest"),
    pytest.param(["train", "MANIFEST", "--lr", "-1"], {}, "--lr -1.0 is out of range; allowed: >= 0", id="train-lr"),
    pytest.param(
        ["train", "MANIFEST", "--quality-dropout", "1.5"],
        {},
        "--quality-dropout 1.5 is out of range",
        id="train-quality-dropout",
    ),
    pytest.param(
        ["train", "--output-dir", "OUT/never-run", "--resume", "auto"],
        {},
        "a manifest is needed (or --resume a checkpoint that names one)",
        id="train-resume-nothing",  # a SystemExit("message") deep in a command still says its message
    ),
    pytest.param(["export", "runs/missing"], {}, "CHECKPOINT 'runs/missing': no such file", id="export-missing"),
    pytest.param(["export", "OUT"], {}, "holds no best.pt", id="export-no-best"),
    pytest.param(["export", "MANIFEST/manifest.csv", "--name", "a/b"], {}, "--name 'a/b'", id="export-name"),
    pytest.param(
        ["evaluate", "--manifest", "MANIFEST", "--models-dir", MODELS, "--model", "no-such-model"],
        {},
        "--model 'no-such-model': no model folder",
        id="evaluate-unknown-model",
    ),
    pytest.param(
        [*EVALUATE, "--threshold", "1.5", "--out", "OUT"],
        {},
        "--threshold 1.5 is out of range; allowed: 0 to 1",
        id="evaluate-threshold",
    ),
    pytest.param(
        [*EVALUATE, "--out", "MANIFEST"],
        {},
        "already holds files; choose another folder or pass --force",
        id="evaluate-existing-report",
    ),
    pytest.param(["evaluate", "--model", "x"], {}, "required: --manifest", id="evaluate-no-manifest"),
    pytest.param(["score", "no/such.jpg", "--models-dir", MODELS], {}, "no/such.jpg", id="score-missing"),
    pytest.param(["score", "MANIFEST", "--threshold", "1.5"], {}, "--threshold", id="score-threshold"),
    pytest.param(["label", "MANIFEST"], {}, "required: --out", id="label-no-out"),
    pytest.param(["serve", "--port", "99999"], {}, "--port: Input should be less than or equal to 65535", id="port"),
    pytest.param(["serve"], {"UTILITY_GATE_TARGETS": "{bad"}, "UTILITY_GATE_TARGETS: not valid JSON", id="gate-json"),
    pytest.param(["serve"], {"UTILITY_GATE_TARGETS": "[1]"}, "UTILITY_GATE_TARGETS: must be a JSON object", id="gate"),
    pytest.param(["serve"], {"UTILITY_MAX_BATCH_SIZE": "x"}, "UTILITY_MAX_BATCH_SIZE: Input should", id="int"),
    pytest.param(["serve"], {"UTILITY_QUEUE_SIZE": "2"}, "UTILITY_QUEUE_SIZE (2) must be at least", id="queue"),
    pytest.param(["serve"], {"UTILITY_LOG_LEVEL": "LOUD"}, "UTILITY_LOG_LEVEL: must be DEBUG", id="log-level"),
    pytest.param(["frobnicate"], {}, "unknown command 'frobnicate'", id="unknown-command"),
]


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, str]:
    manifest = tmp_path / "labels"
    manifest.mkdir()
    (manifest / "manifest.csv").write_text("source,image,distortion,level,split,label\n")
    (tmp_path / "empty").mkdir()
    return {"MANIFEST": str(manifest), "OUT": str(tmp_path / "empty")}


def cli(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("UTILITY_")}
    full = {**clean, "PYTHONPATH": str(ROOT), **env}
    cmd = [sys.executable, "-m", "app.cli", *argv]
    return subprocess.run(cmd, env=full, cwd=cwd, capture_output=True, text=True, timeout=120)


def substitute(argv: list[str], folders: dict[str, str]) -> list[str]:
    out = []
    for arg in argv:
        head, sep, rest = arg.partition("/")
        out.append(folders[head] + sep + rest if head in folders else arg)
    return out


@pytest.mark.parametrize(("argv", "env", "says"), MISTAKES)
def test_a_mistake_is_one_line_and_exit_code_2(argv, env, says, folders, tmp_path):
    done = cli(substitute(argv, folders), env, tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert says in lines[0] and lines[0].startswith("image-utility")
    assert done.stdout == ""


def test_debug_shows_the_traceback(tmp_path):
    done = cli(["--debug", "train", "LABELS/missing"], {}, tmp_path)
    assert done.returncode == 1 and "Traceback" in done.stderr and "UsageError" in done.stderr


def test_option_mistakes_are_answered_before_torch_is_imported(tmp_path):
    code = (
        "import sys\nfrom app.cli import main\n"
        "codes = [main(['train', 'missing']), main(['export', 'missing']), main(['evaluate', '--model', 'x'])]\n"
        "sys.stdout.write(f'{codes} {\"torch\" in sys.modules}')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path, capture_output=True
    )
    assert done.stdout.decode() == "[2, 2, 2] False", done.stderr
