"""The model card (README.md in the model folder), generated from the training and export records."""

from __future__ import annotations

import json
from typing import Any

from training.markdown import confusion_table, num, pct
from training.provenance import portable_paths

MAX_SIDE_CHARS = 4000


def _pct(x: float | None) -> str:
    return pct(x, unit="%")


def _auc(m: dict[str, Any]) -> str:
    return num(m.get("auroc"))


def _data_section(ckpt: dict[str, Any], training: dict[str, Any]) -> list[str]:
    data = ckpt["data"]
    lines = ["## Data", "", f"- Manifest: `{ckpt['args']['manifest']}`, label column `{data['label_column']}`"]
    lines.append(f"- Labelers: {json.dumps(training['labelers'], default=str)}")
    for dist, levels in data["distortions"].items():
        lines.append(f"- Distortion `{dist}`, levels (parameter): {', '.join(levels)}")
    lines += ["", "| split | images | useful | non-useful | source photos |", "|---|---|---|---|---|"]
    for split, c in sorted(data["splits"].items()):
        lines.append(
            f"| {split} | {c['total']} | {c['useful']} | {c['non_useful']} | {data['sources'].get(split, '')} |"
        )
    for name, content in sorted(ckpt.get("side_files", {}).items()):
        text = json.dumps(content, indent=1, sort_keys=True, default=str)
        if len(text) > MAX_SIDE_CHARS:
            lines += ["", f"`{name}` beside the manifest ({len(text)} characters) is in the ONNX metadata only."]
            continue
        lines += ["", f"`{name}` beside the manifest (labelling rule, thresholds):", "", "```json", text, "```"]
    return [*lines, ""]


def _threshold_origin(info: dict[str, Any]) -> str:
    best = info["ckpt"].get("best") or {}
    if best.get("threshold_on_validation") is not None:
        return f"set at export; validation's best balanced accuracy was at {best['threshold_on_validation']:.3f}"
    return "chosen on validation: the best balanced accuracy"


def _metrics_section(info: dict[str, Any]) -> list[str]:
    exp = info["export"]
    kinds = [k for k in ("fp32", "int8") if k in exp]
    lines = [
        "## Test metrics",
        "",
        "Measured on the test split through the service's own engine (`app.engine.UtilityModel`, onnxruntime CPU),",
        f"at the model's default threshold {info.get('threshold', 0.5):.3f} on p(useful) ({_threshold_origin(info)}). "
        f"Shipped: **{info['shipped']}**.",
        "",
        "| model | accuracy | balanced accuracy | AUROC | images/s (batch "
        f"{exp[kinds[0]]['batch']}, 2 threads) | size |",
        "|---|---|---|---|---|---|",
    ]
    for k in kinds:
        t = exp[k]["test"]
        lines.append(
            f"| {k} | {_pct(t.get('accuracy'))} | {_pct(t.get('balanced_accuracy'))} | {_auc(t)} "
            f"| {exp[k]['images_per_s']:.1f} | {exp[k]['bytes'] / 1e6:.1f} MB |"
        )
    for k in kinds:
        if exp[k]["test"]:
            lines += ["", f"Confusion matrix ({k}, test split):", "", confusion_table(exp[k]["test"]).rstrip()]
    shipped = exp[info["shipped"]]["test"]
    if shipped.get("per_level"):
        lines += ["", "Accuracy of the shipped model per distortion level (test split):", ""]
        lines += ["| distortion | level | images | useful | accuracy |", "|---|---|---|---|---|"]
        for key, v in shipped["per_level"].items():
            dist, level = key.split("|", 1)
            lines.append(f"| {dist} | {level} | {v['n']} | {v['useful']} | {_pct(v['accuracy'])} |")
    lines += [
        "",
        f"ONNX check: `onnx.checker` passed; onnxruntime vs PyTorch max abs difference on the logits of "
        f"{exp['parity_images']} real test images: {exp['parity_max_abs_diff']:.2e}.",
        "",
    ]
    return lines


def _training_section(ckpt: dict[str, Any]) -> list[str]:
    a, best = ckpt["args"], ckpt["best"]
    start = "ImageNet-pretrained" if a["pretrained"] else "from scratch"
    if a.get("init"):
        start = f"initialised from the utility checkpoint `{a['init']}`"
    recipe = (
        f"- {_network(a, start)}, cross-entropy, {_optimizer(a)} weight decay "
        f"{a['weight_decay']}, {a['schedule']} schedule, {a['epochs']} epochs, batch {a['batch_size']}, "
        f"class balancing `{a['balance']}`, seed {a['seed']}, input {a['size']} px"
    )
    if a.get("stage") == "distill":
        start = "from scratch, distilled"
        recipe = (
            f"- {_network(a, start)} from the teacher `{a['teacher']}` on fresh views (function matching: "
            f"utility-logit BCE at temperature {a['temperature']}, ImageNet KL weight {a['imagenet_weight']}), "
            f"{_optimizer(a)} weight decay {a['weight_decay']}, warm-up {a['warmup']} + cosine over "
            f"{a['epochs']} steps (the 'epoch' columns count steps), batch {a['batch_size']}, seed {a['seed']}, "
            f"input {a['size']} px"
        )
    lines = [
        "## Training",
        "",
        recipe + (", bfloat16 autocast" if a.get("bf16") else ""),
        f"- Best epoch {best['epoch']} by {best['on']} {best['metric']} ({best['value']:.4f}); "
        f"training wall time {ckpt['wall_s'] / 60:.1f} min on {a['threads']} CPU threads; commit `{ckpt['commit']}`",
        "",
        "| epoch | lr | train loss | val accuracy | test accuracy | test balanced acc. | test AUROC |",
        "|---|---|---|---|---|---|---|",
    ]
    for h in ckpt["history"]:
        val, test = h.get("val", {}), h.get("test", {})
        lines.append(
            f"| {h['epoch']} | {h['lr']:.2e} | {h['train']['loss']:.4f} | {_pct(val.get('accuracy'))} "
            f"| {_pct(test.get('accuracy'))} | {_pct(test.get('balanced_accuracy'))} | {_auc(test)} |"
        )
    return [*lines, ""]


def _network(a: dict[str, Any], start: str) -> str:
    backbone = a.get("backbone", "resnet18")
    return f"ResNet-18 ({start})" if backbone == "resnet18" else f"a head on the frozen ImageNet {backbone}"


def _optimizer(a: dict[str, Any]) -> str:
    if a.get("optimizer", "sgd") == "adamw":
        return f"AdamW lr {a['lr']}"
    return f"SGD lr {a['lr']} momentum {a['momentum']}"


def render_card(info: dict[str, Any]) -> str:
    ckpt, spec, training = info["ckpt"], info["spec"], info["training"]
    lines = [
        f"# {info['name']}",
        "",
        f"Predicts whether an image is still *useful* for machine {info['task']} (after Khan et al., *Towards an Image "
        f"Utility Assessment Framework for Machine Perception*): {training['architecture']}; logits "
        "`[non-useful, useful]`.",
        "",
        f"- Version `{info['version']}`, file `1/model.onnx` ({info['shipped']}), input `input` float32 "
        f"[batch, {spec.channels}, {spec.size}, {spec.size}], output `logits` [batch, 2]",
        f"- Preprocessing (in the ONNX metadata): resize `{spec.resize}` to {spec.size} px, {spec.interpolation}, "
        f"mean {list(spec.mean)}, std {list(spec.std)}, JPEG draft decoding {spec.draft}"
        + (", plus a native-resolution centre crop on the JPEG block grid as channels 3-5" if spec.native_crop else "")
        + (
            f"; channel {spec.channels - 1} is constant: the JPEG quality factor read from the file's quantisation "
            "table, log(q) / log(100), or -1 for files that name none (PNG, WebP...)"
            if spec.quality_map
            else ""
        ),
        "",
        *_data_section(ckpt, training),
        *_metrics_section(info),
        *_training_section(ckpt),
        "## Limits",
        "",
        "- Utility is learnt only for the distortions and levels listed above, on the photos listed above; other "
        "distortions (blur, noise, other codecs) and other image domains are untested.",
        '- Labels come from the named labeler networks; "useful" means useful *to them*, and they may have seen '
        "some of these photos in training.",
        "- The best epoch is chosen on a validation split held out from the training photos; the test photos are "
        "never used for any choice.",
        *[f"- {note}" for note in info.get("notes", [])],
        "",
        "## Reproduce",
        "",
        "```",
        *([ckpt["command"]] if ckpt.get("command") else []),
        info["export_command"],
        "```",
        "",
    ]
    return portable_paths("\n".join(lines))
