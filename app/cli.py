"""``image-utility``: one console script, one subcommand per step.

Each subcommand lives in its own module with ``get_parser()`` and ``main(argv) -> int``; the
module is imported only when its subcommand runs, so ``serve`` and ``score`` never import torch.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("app.serve", "run the HTTP service on the models in a folder"),
    "score": ("app.score", "score image files and folders offline (no HTTP)"),
    "label": ("training.label", "label distorted images with pretrained networks (needs [train])"),
    "train": ("training.train", "train the ResNet-18 utility predictor (needs [train])"),
    "export": ("training.export", "export a checkpoint to an ONNX model folder (needs [train])"),
    "evaluate": ("training.evaluate", "re-measure the paper's experiments into a report (needs [train])"),
}


def usage() -> str:
    lines = ["usage: image-utility <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "'image-utility <command> --help' shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(usage() + "\n")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        sys.stderr.write(f"image-utility: unknown command {name!r}\n\n{usage()}\n")
        return 2
    module_name = COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("torch", "torchvision", "onnx", "pandas", "cv2", "skimage"):
            sys.stderr.write(
                f"image-utility {name}: needs the training extras: pip install 'image-utility[train]' ({exc})\n"
            )
            return 2
        raise
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
