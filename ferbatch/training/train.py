"""Training a compact FER+ classifier (PyTorch, optional extra ``train``: ``torch==2.13.0``).

The network is plain conv/BN/ReLU/max-pool blocks, global average pooling and one linear layer
(VGG-style, Simonyan & Zisserman 2015; sized for a 2-core CPU), so it exports to ONNX and
TensorRT without custom ops. Input (N, 1, 48, 48) float32 = (gray / 255 - 0.5) / 0.5, output
(N, 8) logits in FER+ order.

Networks: ``ferbatch.training.nets`` (``vgg`` = v1, ``res``). Labels: "majority" (cross-entropy on
the majority class) or "probability" (cross-entropy on the normalised votes, the FER+ paper's PLD
mode). Class imbalance (``balance``): "none"; "logit_adjust", the logit-adjusted loss of Menon et
al. 2021 (arXiv 2007.07314), cross-entropy of ``logits + tau * log(prior)`` with tau = 1 and the
prior = mean training label distribution, so the raw logits are balanced-error scores (adding
``log(prior)`` back gives the posterior); "sqrt_sampling", each image drawn with probability
proportional to ``n_class ** -0.5`` (square-root sampling, Mahajan et al. 2018). Augmentation on the
train split only: ``ferbatch.training.augment`` (``basic`` = v1, ``pipeline``), optional mixup.
AdamW, one-cycle cosine schedule, early stopping on validation acc@1, fixed seeds, a checkpoint
every epoch that a rerun with the same ``out`` continues from.

Devices: ``device="cuda"`` trains on an NVIDIA GPU (augmentation stays on the CPU, batches move to
the GPU); the exported ONNX is the same either way. ``save_logits`` writes the best model's logits on
the (unaugmented) training and validation images, ``train_logits.npy`` / ``val_logits.npy`` (N, 8)
float32 in load order (``train_logits.npy`` covers every image of the training folder, the selection split's
too when it is held out, so any run on that folder can read it): a teacher for offline knowledge distillation (Hinton et al. 2015,
arXiv 1503.02531): ``teacher`` = one or more such files (their logits averaged: an ensemble), and the
student's loss is ``(1 - a) * CE(targets) + a * T^2 * CE(softmax(teacher / T), softmax(student / T))`` (cross-entropy: the KL divergence plus the teacher's entropy, a constant)
with ``a = distill_alpha``, ``T = distill_t``; the teacher sees the image before augmentation. With
``balance="logit_adjust"`` both terms see the adjusted logits ``z + log(prior)`` (Menon et al. 2021), so
the teacher's class prior is absorbed by the adjustment and the exported logits ``z`` stay balanced.
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
from ferbatch.training.augment import AUGMENTS, augment, mixup
from ferbatch.training.data import FaceSet, describe_counts, load_faces
from ferbatch.training.nets import build_model as _build
from ferbatch.training.nets import require_torch
from ferbatch.training.protocol import selection_mask

__all__ = ["TrainConfig", "train", "export_onnx", "prepare_train_folder"]


@dataclass
class TrainConfig:
    """Training settings (recorded in the checkpoint and the model card).

    Attributes (beyond data/out/epochs/batch/lr/weight_decay/width/seed):
        val: a validation folder, or "selection": the protocol's selection split of the training
            data (``ferbatch.training.protocol.selection_mask``, 10 % by image name, seed 0), held out
            of training and used for the best epoch (FER2013Valid then stays untouched until the card).
        label_mode: "probability" (PLD, vote distributions) | "majority".
        arch: "vgg" | "res" (``ferbatch.training.nets``); augment: "basic" | "pipeline".
        balance: "none" | "logit_adjust" | "sqrt_sampling" (module docstring).
        mixup: Beta(alpha, alpha) of mixup; 0 = off.
        init: an exported ONNX of the same arch/width to fine-tune from (``nets.init_from_onnx``).
        select: best-epoch criterion on validation, "acc1" | "acc1+f1" (mean of acc@1 and macro-F1).
        limit: first N training images; threads: torch threads (0 = default); time_budget_s: stop
            after the epoch that passes it (0 = none).
        device: "cpu" | "cuda" (module docstring); save_logits: write train/val logits of the best model.
        teacher: comma-separated ``train_logits.npy`` files of teachers trained on the same data and
            limit (averaged); distill_alpha, distill_t: the distillation loss's weight and temperature.
    """

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
    arch: str = "vgg"
    augment: str = "basic"
    balance: str = "none"
    mixup: float = 0.0
    init: str | None = None
    select: str = "acc1"
    device: str = "cpu"
    save_logits: bool = False
    teacher: str | None = None
    distill_alpha: float = 0.7
    distill_t: float = 4.0


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


_require_torch = require_torch


def build_model(width: int = 16, arch: str = "vgg"):
    """The network of ``ferbatch.training.nets`` (kept here for callers of v1)."""
    return _build(width, arch)


def _normalise(torch, imgs_u8: np.ndarray):
    return (torch.from_numpy(imgs_u8).float().unsqueeze(1) / 255.0 - 0.5) / 0.5


def predict_logits(torch, model, x, batch=512) -> np.ndarray:
    """(N, 8) float32 logits of ``model`` in eval mode for (N, 1, S, S) float32 CPU inputs (the model may
    be on a GPU: batches go to its device)."""
    model.eval()
    dev = next(model.parameters()).device
    with torch.no_grad():
        return np.concatenate([model(x[i : i + batch].to(dev)).cpu().numpy() for i in range(0, len(x), batch)])


def _evaluate(torch, model, x, labels) -> tuple[float, float]:
    from ferbatch.training.evaluate import metrics

    m = metrics(predict_logits(torch, model, x), labels)
    return m["acc1"], m["macro"]["f1"]


def _check(cfg: TrainConfig) -> None:
    from ferbatch.training.nets import ARCHS

    for key, allowed in (
        ("arch", ARCHS),
        ("augment", AUGMENTS),
        ("balance", BALANCES),
        ("label_mode", LABEL_MODES),
        ("select", ("acc1", "acc1+f1")),
    ):
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"ferbatch train | {key} {getattr(cfg, key)!r} is not one of {', '.join(allowed)}")
    if cfg.device not in ("cpu", "cuda"):
        raise ConfigError(f"ferbatch train | device {cfg.device!r} is not one of cpu, cuda")
    if cfg.teacher and cfg.mixup > 0:
        raise ConfigError("ferbatch train | --teacher and --mixup together are not supported (the teacher's logits are of unmixed images)")


def _teacher_probs(torch, cfg: TrainConfig, n: int):
    """(n, 8) float32 softened teacher probabilities softmax(mean logits / T), or None. Each ``cfg.teacher`` file is
    one teacher's (n, 8) ``.npy`` or an ``.npz`` of several (``scripts/gpu_teachers.py``'s ``teachers.npz``).

    Raises:
        ConfigError: a file cannot be read, or holds logits of another shape (named)."""
    if not cfg.teacher:
        return None
    logits = []
    for f in cfg.teacher.split(","):
        try:
            got = np.load(f)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{f} | cannot read teacher logits: {e}") from e
        if isinstance(got, np.ndarray):
            arrays = [(f, got)]
        else:  # an .npz: one array per teacher
            with got:
                arrays = [(f"{f}[{k}]", got[k]) for k in got.files]
        for name, arr in arrays:
            if arr.shape != (n, 8):
                raise ConfigError(
                    f"{name} | teacher logits have shape {arr.shape}; the training set here has {n} images (same data and --limit?)"
                )
            logits.append(arr.astype(np.float32))
    if not logits:
        raise ConfigError(f"--teacher {cfg.teacher} | no teacher logits in it")
    return torch.softmax(torch.from_numpy(np.mean(logits, 0)) / cfg.distill_t, 1)


VAL_SELECTION = "selection"  # --val selection: the protocol's selection split (TrainConfig.val)
BALANCES = ("none", "logit_adjust", "sqrt_sampling")
LABEL_MODES = ("probability", "majority")


def train(cfg: TrainConfig, log=print) -> dict:
    """Train (or resume) into ``cfg.out``; returns the summary written to ``train_summary.json``.

    Files: ``checkpoint.pt`` (last epoch, for resuming), ``best.pt`` (best validation acc@1; the last epoch without ``val``),
    ``model.onnx`` (exported from best, verified against PyTorch with ONNX Runtime).
    """
    torch = _require_torch()
    _check(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.time()
    tr = load_faces(cfg.data, 48, cfg.limit)
    keep = np.ones(len(tr.labels), bool)
    if cfg.val == VAL_SELECTION:  # hold the selection split out of training; it picks the epoch
        keep = ~selection_mask(tr.names)
        va: FaceSet | None = tr.take(~keep)
        tr = tr.take(keep)
    else:
        va = load_faces(cfg.val, 48) if cfg.val else None
    log(f"train {len(tr.labels)} images (skipped: {describe_counts(tr.skipped)}); val {len(va.labels) if va else 0}")
    xtr = _normalise(torch, tr.images)
    ytr = torch.from_numpy(tr.votes if cfg.label_mode == "probability" else np.eye(8, dtype=np.float32)[tr.labels])
    xva = _normalise(torch, va.images) if va else None
    prior = tr.votes.mean(0) if cfg.label_mode == "probability" else np.bincount(tr.labels, minlength=8) / len(tr.labels)
    log_prior = torch.from_numpy(np.log(np.maximum(prior, 1e-6)).astype(np.float32))
    adjust = log_prior if cfg.balance == "logit_adjust" else torch.zeros(8)
    sample_w = None
    if cfg.balance == "sqrt_sampling":
        counts = np.bincount(tr.labels, minlength=8).astype(np.float64)
        sample_w = torch.from_numpy(counts[tr.labels] ** -0.5)
    soft = _teacher_probs(torch, cfg, len(keep))  # teachers' logits cover every training image, in load order
    if soft is not None:
        soft = soft[torch.from_numpy(keep)]
        if len(soft) != len(xtr):  # a teacher row per training image, aligned: a shift would teach the wrong faces
            raise ConfigError(f"ferbatch train | {len(soft)} teacher rows for {len(xtr)} training images")
    dev = torch.device(cfg.device)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("ferbatch train | --device cuda: torch sees no CUDA device")
    model = build_model(cfg.width, cfg.arch)
    if cfg.init:
        from ferbatch.training.nets import init_from_onnx

        diff0 = init_from_onnx(model, cfg.init, xtr[torch.randperm(len(xtr), generator=torch.Generator().manual_seed(cfg.seed))[:2048]])
        if math.isnan(diff0):
            log(f"grown from {Path(cfg.init).name}: its convs loaded, the residual block starts as the identity")
        else:
            log(f"initialised from {Path(cfg.init).name} (max |torch - onnx| {diff0:.1e})")
    model.to(dev)
    adjust = adjust.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(xtr) / cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15)
    start, best, best_epoch, history = 0, -1.0, -1, []
    ck = out / "checkpoint.pt"
    if ck.is_file():
        state = torch.load(ck, weights_only=False, map_location=dev)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start, best, best_epoch, history = state["epoch"] + 1, state["best"], state["best_epoch"], state["history"]
        log(f"resuming at epoch {start}")
    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(start, cfg.epochs):
        model.train()
        gen.manual_seed(cfg.seed * 1000 + epoch)
        if sample_w is None:
            perm = torch.randperm(len(xtr), generator=gen)
        else:
            perm = torch.multinomial(sample_w, len(xtr), replacement=True, generator=gen)
        te, total = time.time(), 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * cfg.batch : (i + 1) * cfg.batch]
            xb, yb = augment(torch, xtr[idx], gen, cfg.augment), ytr[idx]
            if cfg.mixup > 0:
                xb, yb = mixup(torch, xb, yb, gen, cfg.mixup)
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            z = model(xb)
            loss = torch.sum(-yb * torch.log_softmax(z + adjust, 1), 1).mean()
            if soft is not None:
                t = cfg.distill_t
                # with --balance logit_adjust the teacher is matched by z + log(prior) too, so z stays balanced
                kd = torch.sum(-soft[idx].to(dev) * torch.log_softmax((z + adjust) / t, 1), 1).mean() * t * t
                loss = (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * kd
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        acc, f1 = _evaluate(torch, model, xva, va.labels) if va else (float("nan"), float("nan"))
        history.append({"epoch": epoch, "loss": total / len(xtr), "val_acc1": acc, "val_macro_f1": f1, "seconds": time.time() - te})
        log(f"epoch {epoch}: loss {total / len(xtr):.4f} val acc@1 {acc:.4f} macro-F1 {f1:.4f} ({time.time() - te:.0f} s)")
        # without validation every epoch is "best": the last one is kept, and there is no early stopping
        score = acc if cfg.select == "acc1" else (acc + f1) / 2
        if va is None or score > best + cfg.min_delta or best < 0:
            best_epoch = epoch  # a gain that counts for early stopping
        if va is None or score > best or best < 0:  # the best model is kept on any gain
            best = score
            torch.save(
                {"model": model.state_dict(), "epoch": epoch, "val_acc1": acc, "val_macro_f1": f1, "config": asdict(cfg)}, out / "best.pt"
            )
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
    kept = torch.load(out / "best.pt", weights_only=False, map_location=dev)
    model.load_state_dict(kept["model"])
    if cfg.save_logits:
        # every image of the folder in load order, the layout --teacher reads: with --val selection the held-out
        # rows are filled too (a student trained with --val selection drops them again)
        zva = predict_logits(torch, model, xva).astype(np.float32) if xva is not None else None
        z = np.zeros((len(keep), 8), np.float32)
        z[keep] = predict_logits(torch, model, xtr)
        if cfg.val == VAL_SELECTION and zva is not None:
            z[~keep] = zva
        np.save(out / "train_logits.npy", z)
        if zva is not None:
            np.save(out / "val_logits.npy", zva)
    model.cpu()
    diff = export_onnx(model, out / "model.onnx", sample=xva[:64] if xva is not None else xtr[:64])
    summary = {
        "best_val_acc1": kept["val_acc1"],
        "best_val_macro_f1": kept.get("val_macro_f1"),
        "best_epoch": kept["epoch"],
        "epochs_run": len(history),
        "train_seconds": time.time() - t0,
        "onnx_max_abs_diff": diff,
        "train_prior": [float(p) for p in prior],
        "history": history,
        "config": asdict(cfg),
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def export_onnx(model, path: str | os.PathLike[str], sample) -> float:
    """Export with input ``input`` (N, 1, 48, 48) and output ``logits`` (N, 8), symbolic batch,
    opset 17; returns the max |ONNX Runtime - PyTorch| over ``sample`` (raises if > 1e-3)."""
    torch = _require_torch()
    from ferbatch.models.runners.onnxruntime import onnxruntime_module

    ort = onnxruntime_module()
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
