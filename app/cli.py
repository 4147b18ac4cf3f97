"""``image-utility``: one console script, one subcommand per step.

Each subcommand lives in its own module with ``get_parser()`` and ``main(argv) -> int``; the
module is imported only when its subcommand runs, so ``serve`` and ``score`` never import torch.
"""

from __future__ import annotations

import importlib
import os
import sys

from app.usage import UsageError, missing_module_hint

COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("app.serve", "run the HTTP service on the models in a folder"),
    "score": ("app.score", "score image files and folders offline (no HTTP)"),
    "label": ("training.label.cli", "label distorted images with pretrained networks (needs [train])"),
    "train": ("training.train.cli", "train the ResNet-18 utility predictor (needs [train])"),
    "distill": (
        "training.distill.cli",
        "teach the ResNet-18 the teacher-backed variant on fresh views (needs [train])",
    ),
    "export": ("training.export.cli", "export a checkpoint to an ONNX model folder (needs [train])"),
    "evaluate": ("training.evaluate.cli", "re-measure the paper's experiments into a report (needs [eval])"),
}
# Commands whose module imports torch: their options are parsed and checked first, by a module that does not.
CHECKS = {name: f"training.options.{name}" for name in ("train", "distill", "export", "evaluate")}
DEBUG_FLAG = "--debug"


def usage() -> str:
    lines = ["usage: image-utility [--debug] <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += [
        "",
        "'image-utility <command> --help' shows a command's options.",
        "--debug (or UTILITY_LOG_LEVEL=DEBUG): tracebacks instead of one-line errors.",
    ]
    return "\n".join(lines)


def wants_debug(argv: list[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get("UTILITY_LOG_LEVEL", "").upper() == "DEBUG"


def dispatch(name: str, argv: list[str]) -> int:
    """Check the options (without torch), then import the command's module and run it."""
    if name in CHECKS:
        importlib.import_module(CHECKS[name]).parse(argv)
    try:
        module = importlib.import_module(COMMANDS[name][0])
    except ModuleNotFoundError as exc:
        raise UsageError(missing_module_hint(exc)) from exc
    return int(module.main(argv) or 0)


def run(name: str, argv: list[str], debug: bool) -> int:
    """Run one command; without ``debug`` a failure is one line on stderr, never a traceback."""
    prog = f"image-utility {name}"
    try:
        return dispatch(name, argv)
    except SystemExit as exc:  # --help, or a command that exits by itself
        if isinstance(exc.code, str):  # SystemExit("message"): Python would print it, so do we
            sys.stderr.write(exc.code.rstrip("\n") + "\n")
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
    except Exception as exc:
        if debug:
            raise
        code, line = describe(exc)
        sys.stderr.write(f"{prog}: {line}\n")
        return code


def describe(exc: Exception) -> tuple[int, str]:
    """Exit code and one line for a failure: 2 for a usage mistake, 1 for anything else."""
    if isinstance(exc, ModuleNotFoundError):
        return 2, missing_module_hint(exc)
    if isinstance(exc, UsageError | FileNotFoundError | NotADirectoryError | PermissionError):
        return 2, str(exc)
    return 1, f"{type(exc).__name__}: {exc} (run with --debug for the traceback)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = wants_debug(argv)
    argv = [a for a in argv if a != DEBUG_FLAG]
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(usage() + "\n")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        sys.stderr.write(f"image-utility: unknown command {name!r}; commands: {', '.join(COMMANDS)}\n")
        return 2
    return run(name, rest, debug)


if __name__ == "__main__":
    raise SystemExit(main())
