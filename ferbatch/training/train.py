"""Training a compact FER+ classifier (PyTorch, optional extra ``train``: ``torch==2.13.0``).

The network is plain conv/BN/ReLU/max-pool blocks, global average pooling and one linear layer
(VGG-style, Simonyan & Zisserman 2015; sized for a 2-core CPU), so it exports to ONNX and
TensorRT without custom ops. Input (N, 1, 48, 48) float32 = (gray / 255 - 0.5) / 0.5, output
(N, 8) logits in FER+ order.

Labels: "majority" (cross-entropy on the majority class) or "probability" (cross-entropy on the
normalised votes, the FER+ paper's PD mode). Augmentation on the train split only: horizontal
flip, small rotation/scale/shift (``affine_grid``), brightness/contrast. AdamW, cosine schedule,
early stopping on validation acc@1, fixed seeds, a checkpoint every epoch that ``--resume``
continues from.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ferbatch.errors import ConfigError
from ferbatch.training.data import load_faces

__all__ = ["TrainConfig", "train", "export_onnx", "prepare_train_folder"]


@dataclass
class TrainConfig:
    """Training settings (recorded in the checkpoint and the model card)."""

    data: str
    out: str
    val: str | None = None
    epochs: int = 30
    batch: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    width: int = 16
    label_mode: str = "probability"
    patience: int = 6
    min_delta: float = 0.002
    seed: int = 0
    limit: int | None = None
    threads: int = 0
    time_budget_s: float = 0.0


def prepare_train_folder(data: str | os.PathLike[str]) -> Path:
    """A FER+ folder for ``data``: the folder itself, or ``FER2013Train.tar.gz`` extracted once into
    the user cache (``<cache>/ferplus/<archive name>/...``)."""
    import tarfile

    from ferbatch.models.registry import cache_dir

    p = Path(data)
    if p.is_dir():
        return p
    if not p.is_file() or not p.name.endswith((".tar.gz", ".tgz", ".tar")):
        raise ConfigError(f"{p} | expected a FER+ folder or a .tar.gz of one")
    dest = cache_dir() / "ferplus" / p.name.split(".")[0]
    done = dest / ".extracted"
    if not done.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(p) as t:
            t.extractall(dest, filter="data")
        done.write_text(str(p))
    found = [q.parent for q in dest.rglob("label.csv")]
    if len(found) != 1:
        raise ConfigError(f"{p} | expected one label.csv inside, found {len(found)}")
    return found[0]


def _require_torch():
    try:
        import torch
    except ImportError as e:
        raise ConfigError(f"ferbatch train | needs PyTorch: pip install 'ferbatch[train]' (torch==2.13.0); {e}") from e
    return torch


def build_model(width: int = 16):
    """The compact CNN: [w, w] pool [2w, 2w] pool [4w, 4w] pool [8w] pool, GAP, dropout, linear(8)."""
    torch = _require_torch()
    nn = torch.nn

    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    w = width
    return nn.Sequential(
        *block(1, w),
        *block(w, w),
        nn.MaxPool2d(2),
        *block(w, 2 * w),
        *block(2 * w, 2 * w),
        nn.MaxPool2d(2),
        *block(2 * w, 4 * w),
        *block(4 * w, 4 * w),
        nn.MaxPool2d(2),
        *block(4 * w, 8 * w),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(8 * w, 8),
    )


def _normalise(torch, imgs_u8: np.ndarray):
    return (torch.from_numpy(imgs_u8).float().unsqueeze(1) / 255.0 - 0.5) / 0.5


def _augment(torch, x, gen):
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    ang = (torch.rand(n, generator=gen) - 0.5) * 2 * math.radians(10)
    sc = 1 + (torch.rand(n, generator=gen) - 0.5) * 0.2
    tx, ty = (torch.rand(2, n, generator=gen) - 0.5) * 2 * 0.08
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = torch.nn.functional.grid_sample(x, grid, padding_mode="border", align_corners=False)
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.4
    bright = (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.4
    return (x * contrast + bright).clamp(-1, 1)


def _evaluate(torch, model, x, labels, batch=512) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += int((model(x[i : i + batch]).argmax(1).numpy() == labels[i : i + batch]).sum())
    return correct / len(x)


def train(cfg: TrainConfig, log=print) -> dict:
    """Train (or resume) into ``cfg.out``; returns the summary written to ``train_summary.json``.

    Files: ``checkpoint.pt`` (last epoch, for resuming), ``best.pt`` (best validation acc@1),
    ``model.onnx`` (exported from best, verified against PyTorch with ONNX Runtime).
    """
    torch = _require_torch()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.time()
    tr = load_faces(cfg.data, 48, cfg.limit)
    va = load_faces(cfg.val, 48) if cfg.val else None
    log(f"train {len(tr.labels)} images (skipped {dict(tr.skipped)}); val {len(va.labels) if va else 0}")
    xtr = _normalise(torch, tr.images)
    ytr = torch.from_numpy(tr.votes if cfg.label_mode == "probability" else np.eye(8, dtype=np.float32)[tr.labels])
    xva = _normalise(torch, va.images) if va else None
    model = build_model(cfg.width)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(xtr) / cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15)
    start, best, best_epoch, history = 0, -1.0, -1, []
    ck = out / "checkpoint.pt"
    if ck.is_file():
        state = torch.load(ck, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start, best, best_epoch, history = state["epoch"] + 1, state["best"], state["best_epoch"], state["history"]
        log(f"resuming at epoch {start}")
    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(start, cfg.epochs):
        model.train()
        gen.manual_seed(cfg.seed * 1000 + epoch)
        perm = torch.randperm(len(xtr), generator=gen)
        te, total = time.time(), 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * cfg.batch : (i + 1) * cfg.batch]
            xb = _augment(torch, xtr[idx], gen)
            loss = torch.sum(-ytr[idx] * torch.log_softmax(model(xb), 1), 1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        acc = _evaluate(torch, model, xva, va.labels) if va else float("nan")
        history.append({"epoch": epoch, "loss": total / len(xtr), "val_acc1": acc, "seconds": time.time() - te})
        log(f"epoch {epoch}: loss {total / len(xtr):.4f} val acc@1 {acc:.4f} ({time.time() - te:.0f} s)")
        if acc > best + cfg.min_delta or best < 0:
            best_epoch = epoch  # a gain that counts for early stopping
        if acc > best or best < 0:  # the best model is kept on any gain
            best = acc
            torch.save({"model": model.state_dict(), "epoch": epoch, "val_acc1": acc, "config": asdict(cfg)}, out / "best.pt")
        torch.save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "epoch": epoch,
                "best": best,
                "best_epoch": best_epoch,
                "history": history,
            },
            ck,
        )
        if epoch - best_epoch >= cfg.patience:
            log(f"early stop: no gain over {cfg.min_delta} for {cfg.patience} epochs")
            break
        if cfg.time_budget_s and time.time() - t0 > cfg.time_budget_s:
            log("time budget reached")
            break
    model.load_state_dict(torch.load(out / "best.pt", weights_only=False)["model"])
    diff = export_onnx(model, out / "model.onnx", sample=xva[:64] if xva is not None else xtr[:64])
    summary = {
        "best_val_acc1": best,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "train_seconds": time.time() - t0,
        "onnx_max_abs_diff": diff,
        "history": history,
        "config": asdict(cfg),
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def export_onnx(model, path: str | os.PathLike[str], sample) -> float:
    """Export with input ``input`` (N, 1, 48, 48) and output ``logits`` (N, 8), symbolic batch,
    opset 17; returns the max |ONNX Runtime - PyTorch| over ``sample`` (raises if > 1e-3)."""
    torch = _require_torch()
    import onnxruntime as ort

    model.eval()
    torch.onnx.export(
        model,
        (sample[:2],),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )
    with torch.no_grad():
        ref = model(sample).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": sample.numpy()})[0]
    diff = float(np.abs(got - ref).max())
    if diff > 1e-3:
        raise ConfigError(f"{path} | ONNX Runtime differs from PyTorch by {diff:.2e}; expected <= 1e-3")
    return diff
