"""A ResNet-18-sized stand-in model for benchmarks, written outside models/ (random weights).

Never shipped: the bundled models in models/ are trained. Usage:
    python -m bench.make_model OUT_DIR [--size 224] [--name resnet18-random]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from app.contract import ModelContract, config_pbtxt
from app.preprocess import PreprocessSpec

log = logging.getLogger(__name__)


def make_resnet18_folder(models_dir: Path, name: str = "resnet18-random", size: int = 224) -> Path:
    import onnx
    import torch
    import torchvision

    folder = models_dir / name
    path = folder / "1" / "model.onnx"
    if path.exists():
        return folder
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=2).eval()
    x = torch.zeros(1, 3, size, size)
    torch.onnx.export(
        net,
        (x,),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    model = onnx.load(str(path))
    contract = ModelContract(
        task="classification",
        version="bench-random",
        preprocess=PreprocessSpec(size=size),
        training={"note": "random weights, for benchmarks only"},
    )
    onnx.helper.set_model_props(model, contract.to_metadata())
    onnx.save(model, str(path))
    (folder / "config.pbtxt").write_text(config_pbtxt(name, size))
    (folder / "README.md").write_text(f"# {name}\n\nRandom-weight ResNet-18 for benchmarks. Never serve it.\n")
    return folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out", type=Path)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--name", default="resnet18-random")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    log.info("wrote %s", make_resnet18_folder(args.out, args.name, args.size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
