"""Training the teacher-backed variant (``train --backbone efficientnet-lite0``): the head only.

The trunk is frozen, so each row's embedding (:meth:`LiteUtilityNet.embed` on the service's own
pixels) is computed once and cached per row, keyed by the file and the preprocessing; a rerun, or a
run on more collections, embeds only the rows it has not seen. The head then trains in seconds an
epoch: class-balanced draws, the quality plane hidden on ``--quality-dropout`` of the rows, the best
epoch by ``--select-metric`` on the validation photos. The checkpoint has the same fields as the
ResNet-18's (whole model, spec, best epoch and its threshold, history), so ``export`` takes it as it is.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from app.preprocess import PreprocessSpec, quality_table
from training.files import save_atomic, write_json
from training.metrics import best_threshold, binary_metrics, within_level_auroc
from training.train.backbone import LiteUtilityNet
from training.train.dataset import normalize, pixels_of
from training.train.epoch import best_record, epoch_generator, epoch_order, hide_draws
from training.train.model import quality_inputs

log = logging.getLogger(__name__)
BATCH = 32  # rows per trunk forward pass
HEAD_BATCH = 256


def row_key(path: str) -> str:
    st = Path(path).stat()
    return f"{path}\0{st.st_size}\0{st.st_mtime_ns}"


def cache_file(cache_dir: Path, spec: PreprocessSpec, backbone: str) -> Path:
    digest = hashlib.sha1(f"{spec.to_json()}\0{backbone}".encode()).hexdigest()[:20]
    return cache_dir / f"embeddings-{digest}.pt"


def _embed_new(model: LiteUtilityNet, paths: list[str], spec: PreprocessSpec, workers: int) -> dict[str, torch.Tensor]:
    emb = torch.empty((len(paths), model.shift.numel()), dtype=torch.float32)
    codes = torch.empty(len(paths), dtype=torch.uint8)
    with ThreadPoolExecutor(max(1, workers)) as pool, torch.no_grad():
        for start in tqdm(range(0, len(paths), BATCH), desc="embed", mininterval=10):
            pixels = torch.from_numpy(
                np.stack(list(pool.map(partial(pixels_of, spec=spec), paths[start : start + BATCH])))
            )
            x = normalize(pixels, spec)
            emb[start : start + len(x)] = model.embed(x[:, :3])
            codes[start : start + len(x)] = pixels[:, -1, 0, 0] if spec.quality_map else 0
    return {"embedding": emb, "quality": codes}


def embed_rows(
    model: LiteUtilityNet, paths: list[str], spec: PreprocessSpec, cache_dir: Path, backbone: str, workers: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) embeddings and (N,) stored quality codes of ``paths``, from the cache where it has them."""
    file = cache_file(cache_dir, spec, backbone)
    cached = torch.load(file, weights_only=False) if file.is_file() else {"keys": [], "embedding": None}
    index = {k: i for i, k in enumerate(cached["keys"])}
    keys = [row_key(p) for p in paths]
    missing = sorted({k: p for k, p in zip(keys, paths, strict=True) if k not in index}.items())
    if missing:
        log.info("embedding %d rows with %s (%d cached)", len(missing), backbone, len(index))
        new = _embed_new(model, [p for _, p in missing], spec, workers)
        parts = [cached] if cached["embedding"] is not None else []
        cached = {
            "keys": cached["keys"] + [k for k, _ in missing],
            **{f: torch.cat([*(c[f] for c in parts), new[f]]) for f in ("embedding", "quality")},
        }
        cache_dir.mkdir(parents=True, exist_ok=True)
        save_atomic(file, partial(torch.save, cached))
        index = {k: i for i, k in enumerate(cached["keys"])}
    rows = torch.tensor([index[k] for k in keys], dtype=torch.long)
    return cached["embedding"][rows], cached["quality"][rows]


def quality_of(codes: torch.Tensor) -> torch.Tensor:
    """Stored quality codes -> (N, 2) (known, log q), as :func:`quality_inputs` reads the plane."""
    plane = torch.from_numpy(quality_table())[codes.long()].view(-1, 1, 1, 1)
    return quality_inputs(plane)


def head_pass(model: LiteUtilityNet, emb: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat(
            [model.head_logits(emb[i : i + 4096], quality[i : i + 4096]) for i in range(0, len(emb), 4096)]
        )


def measure(model: LiteUtilityNet, data: dict[str, Any]) -> dict[str, Any]:
    """The epoch metrics of :func:`training.train.epoch.evaluate`, on a split's embeddings."""
    logits = head_pass(model, data["embedding"], data["quality"])
    y = data["labels"].numpy()
    p = torch.softmax(logits, 1)[:, 1].numpy()
    out = {"loss": float(F.cross_entropy(logits, data["labels"])), **binary_metrics(y, p)}
    out["best_threshold"] = best_threshold(y, p)
    out["within_level_auroc"] = within_level_auroc(data["frame"], y, p)
    return out


def train_epoch(
    model: LiteUtilityNet, optimizer: torch.optim.Optimizer, data: dict[str, Any], args: Any, epoch: int
) -> dict[str, float]:
    model.train()
    gen = epoch_generator(args.seed, epoch)
    order, _ = epoch_order(data["labels"], args.balance, gen)
    if args.epoch_size:
        order = order[: args.epoch_size]
    total = 0.0
    for start in range(0, len(order), HEAD_BATCH):
        idx = order[start : start + HEAD_BATCH]
        quality = data["quality"][idx].clone()
        if args.quality_map and args.quality_dropout > 0:
            quality[hide_draws(len(idx), args.quality_dropout, gen)] = 0.0  # unknown: (known 0, log q 0)
        loss = F.cross_entropy(model.head_logits(data["embedding"][idx], quality), data["labels"][idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(idx)
    return {"loss": total / max(len(order), 1), "images": len(order), "steps": -(-len(order) // HEAD_BATCH)}


def load_embedded(
    model: LiteUtilityNet, df: pd.DataFrame, splits: tuple[str, ...], spec: PreprocessSpec, args: Any, cache: Path
) -> dict[str, dict[str, Any]]:
    """The labelled rows of each split in ``splits`` with their embeddings (one pass over the cache)."""
    part = df.loc[df["split"].isin(splits) & (df["label"] >= 0)].reset_index(drop=True)
    emb, codes = embed_rows(model, part["path"].tolist(), spec, cache, args.backbone, args.workers)
    quality, labels = quality_of(codes), torch.tensor(part["label"].to_numpy(), dtype=torch.long)
    out = {}
    for split in splits:
        rows = torch.from_numpy((part["split"] == split).to_numpy())
        frame = part.loc[rows.numpy()].reset_index(drop=True)
        out[split] = {"embedding": emb[rows], "quality": quality[rows], "labels": labels[rows], "frame": frame}
    return out


def fit(
    model: LiteUtilityNet, splits: dict[str, dict[str, Any]], args: argparse.Namespace, state: dict[str, Any], save: Any
) -> dict[str, Any]:
    """Train the head for ``args.epochs``, keeping the best epoch's weights in the model at the end."""
    model.set_normalisation(splits["train"]["embedding"])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(args.epochs, 1))
    chooser = "val" if "val" in splits else "test"
    best_state = None
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        row = {
            "epoch": epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "train": train_epoch(model, optimizer, splits["train"], args, epoch),
        }
        scheduler.step()
        row[chooser] = measure(model, splits[chooser])
        pick = row[chooser]
        better = state["best"] is None or pick[args.select_metric] > state["best"]["value"]
        if "test" in splits and chooser != "test":
            row["test"] = measure(model, splits["test"])
        row["seconds"] = time.perf_counter() - t0
        state["history"].append(row)
        if better:
            state["best"] = best_record(epoch, args.select_metric, pick, chooser, row.get("test"))
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
            save("best.pt", epoch)
        log.info(
            "epoch %d %s: auroc %.4f bal_acc %.4f%s",
            epoch,
            chooser,
            pick["auroc"],
            pick["balanced_accuracy"],
            ", best" if better else "",
        )
    if best_state is not None:
        model.load_state_dict(best_state)
    return state


def test_head(ckpt: dict[str, Any], df: pd.DataFrame, spec: PreprocessSpec, args: Any) -> dict[str, Any]:
    """``--test-only``: the checkpoint's model measured on the test split's embeddings."""
    from training.train.model import model_from_checkpoint

    model = model_from_checkpoint(ckpt)
    cache = args.cache_dir or args.output_dir.parent / "cache"
    return measure(model, load_embedded(model, df, ("test",), spec, args, cache)["test"])


def run_head(
    args: argparse.Namespace, df: pd.DataFrame, spec: PreprocessSpec, state: dict[str, Any], checkpoint: Any
) -> dict[str, Any]:
    """Embed every labelled row once (cached), train the head, write best.pt / checkpoint.pt / history."""
    from training.train.backbone import build_lite_model

    model = build_lite_model(args.backbone, spec.quality_map)
    cache = args.cache_dir or args.output_dir.parent / "cache"
    names = tuple(s for s in ("train", "val", "test") if ((df["split"] == s) & (df["label"] >= 0)).any())
    splits = load_embedded(model, df, names, spec, args, cache)
    args.output_dir.mkdir(parents=True, exist_ok=True)

    def save(name: str, epoch: int) -> None:
        save_atomic(args.output_dir / name, partial(torch.save, checkpoint(model, epoch, args, state)))

    t0 = time.perf_counter()
    fit(model, splits, args, state, save)
    state["wall_s"] = time.perf_counter() - t0
    save("checkpoint.pt", args.epochs)
    write_json(args.output_dir / "history.json", state["history"])
    write_json(args.output_dir / "summary.json", {k: state[k] for k in ("best", "wall_s", "data", "commit")})
    return state
