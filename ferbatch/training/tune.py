"""Hyperparameter search for the FER+ classifier with Ray Tune and ASHA early stopping.

Searched: learning rate (log-uniform), width (channels of the first block), augmentation strength
(a multiplier of the flip/rotation/scale/shift/brightness/contrast amplitudes of ``ferbatch
train``; 0 = none), label mode ("probability" | "majority") and class weighting (the loss of a
class weighted by ``count ** -alpha``, normalised to mean 1; alpha 0 = unweighted). Each trial
trains the network of :func:`ferbatch.training.train.build_model` with AdamW and a one-cycle
schedule, reports validation acc@1 after every epoch, and ASHA stops the weak trials early.
Needs the ``tune`` and ``train`` extras (Ray Tune, PyTorch).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferbatch.errors import ConfigError
from ferbatch.training.data import load_faces

__all__ = ["TuneConfig", "tune", "search_space", "train_trial"]


@dataclass
class TuneConfig:
    """Search settings.

    Attributes:
        data: FER+ training folder (or ``FER2013Train.tar.gz``); val: validation folder (None =
            the last ``holdout`` share of the loaded training images).
        out: folder for ``results.csv``, ``best_config.json`` and Ray Tune's trial records.
        samples: trials; epochs: most epochs per trial (ASHA's max_t); grace: epochs every trial
            gets before ASHA may stop it; limit: use the first N training images.
        cpus_per_trial: CPUs each trial reserves (torch threads); seed: of the search and trials.
    """

    data: str
    out: str
    val: str | None = None
    samples: int = 8
    epochs: int = 4
    grace: int = 1
    limit: int | None = None
    holdout: float = 0.2
    batch: int = 128
    cpus_per_trial: int = 1
    seed: int = 0


def search_space() -> dict[str, Any]:
    """The Ray Tune search space (see the module docstring)."""
    from ray import tune as rt

    return {
        "lr": rt.loguniform(3e-4, 1e-2),
        "width": rt.choice([8, 16, 24]),
        "aug": rt.uniform(0.0, 1.5),
        "label_mode": rt.choice(["probability", "majority"]),
        "class_weight": rt.choice([0.0, 0.5, 1.0]),
    }


def _augment(torch, x, gen, s: float):
    """``ferbatch train``'s augmentation with every amplitude times ``s`` (flip when s > 0)."""
    if s <= 0:
        return x
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    ang = (torch.rand(n, generator=gen) - 0.5) * 2 * math.radians(10) * s
    sc = 1 + (torch.rand(n, generator=gen) - 0.5) * 0.2 * s
    tx, ty = (torch.rand(2, n, generator=gen) - 0.5) * 2 * 0.08 * s
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = torch.nn.functional.grid_sample(x, grid, padding_mode="border", align_corners=False)
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.4 * s
    bright = (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.4 * s
    return (x * contrast + bright).clamp(-1, 1)


def class_weights(labels: np.ndarray, alpha: float) -> np.ndarray:
    """(8,) float32 weights ``count ** -alpha`` normalised to a mean of 1 over present classes
    (absent classes weigh 0)."""
    counts = np.bincount(labels, minlength=8).astype(np.float64)
    w = np.where(counts > 0, np.maximum(counts, 1) ** -float(alpha), 0.0)
    return (w / w[counts > 0].mean()).astype(np.float32)


def train_trial(config: dict[str, Any], data: dict[str, np.ndarray], epochs: int, batch: int, seed: int, threads: int, report) -> None:
    """Train one configuration, calling ``report({"val_acc1": ..., "epoch": ...})`` after each epoch.

    Args:
        config: lr, width, aug, label_mode, class_weight.
        data: ``xtr`` (N, 48, 48) uint8, ``votes`` (N, 8) float32, ``ytr`` (N,) int64, ``xva``, ``yva``.
        report: Ray Tune's ``tune.report`` (or any callable, for a run outside Tune).
    """
    import torch

    from ferbatch.training.train import _normalise, build_model

    torch.manual_seed(seed)
    torch.set_num_threads(max(1, threads))
    xtr, xva = _normalise(torch, data["xtr"]), _normalise(torch, data["xva"])
    target = data["votes"] if config["label_mode"] == "probability" else np.eye(8, dtype=np.float32)[data["ytr"]]
    ytr = torch.from_numpy(np.ascontiguousarray(target))
    w = torch.from_numpy(class_weights(data["ytr"], config["class_weight"]))
    model = build_model(int(config["width"]))
    opt = torch.optim.AdamW(model.parameters(), lr=float(config["lr"]), weight_decay=5e-4)
    steps = math.ceil(len(xtr) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(config["lr"]), total_steps=epochs * steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(steps):
            idx = perm[i * batch : (i + 1) * batch]
            xb = _augment(torch, xtr[idx], gen, float(config["aug"]))
            per = torch.sum(-ytr[idx] * torch.log_softmax(model(xb), 1) * w, 1)
            loss = per.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(xva[i : i + 512]).argmax(1) for i in range(0, len(xva), 512)]).numpy()
        report({"val_acc1": float((pred == data["yva"]).mean()), "epoch": epoch + 1, "loss": float(loss.detach())})


def _load(cfg: TuneConfig) -> dict[str, np.ndarray]:
    from ferbatch.training.train import prepare_train_folder

    tr = load_faces(prepare_train_folder(cfg.data), 48, cfg.limit)
    if cfg.val:
        va = load_faces(cfg.val, 48)
        return {"xtr": tr.images, "votes": tr.votes, "ytr": tr.labels, "xva": va.images, "yva": va.labels}
    n_va = int(round(len(tr.labels) * cfg.holdout))
    if not 0 < n_va < len(tr.labels):
        raise ConfigError(f"--holdout {cfg.holdout} | leaves no training or no validation image of {len(tr.labels)}; give --val")
    k = len(tr.labels) - n_va
    return {"xtr": tr.images[:k], "votes": tr.votes[:k], "ytr": tr.labels[:k], "xva": tr.images[k:], "yva": tr.labels[k:]}


def tune(cfg: TuneConfig, space: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the search on the current Ray (or a local one it starts); write ``results.csv`` (one
    row per trial: its config, last and best val acc@1, epochs run) and ``best_config.json``.

    Returns:
        (rows sorted best first, the best row).

    Raises:
        ConfigError: bad settings, missing extras, or data without usable images.
    """
    if cfg.samples < 1 or cfg.epochs < 1 or not 1 <= cfg.grace <= cfg.epochs:
        raise ConfigError(
            f"--samples/--epochs/--grace | received {cfg.samples}/{cfg.epochs}/{cfg.grace}; expected >= 1 and grace <= epochs"
        )
    try:
        import torch  # noqa: F401
        from ray import tune as rt
        from ray.tune.schedulers import ASHAScheduler
    except ImportError as e:
        raise ConfigError(f"ferbatch tune | needs Ray Tune and PyTorch: pip install 'ferbatch[tune,train]'; {e}") from e
    import ray

    out = Path(cfg.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    data = _load(cfg)
    if not ray.is_initialized():
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)

    def trainable(config: dict[str, Any], data: dict[str, np.ndarray]) -> None:
        train_trial(config, data, cfg.epochs, cfg.batch, cfg.seed, cfg.cpus_per_trial, rt.report)

    tuner = rt.Tuner(
        rt.with_resources(rt.with_parameters(trainable, data=data), {"cpu": cfg.cpus_per_trial}),
        param_space=space or search_space(),
        tune_config=rt.TuneConfig(
            metric="val_acc1",
            mode="max",
            num_samples=cfg.samples,
            scheduler=ASHAScheduler(time_attr="epoch", max_t=cfg.epochs, grace_period=cfg.grace, reduction_factor=2),
            search_alg=_seeded_search(cfg.seed),
        ),
        run_config=rt.RunConfig(name="trials", storage_path=str(out), verbose=0),
    )
    grid = tuner.fit()
    rows = []
    for i in range(len(grid)):
        r = grid[i]
        conf, metrics = r.config or {}, r.metrics or {}
        if r.error is not None:
            rows.append({**conf, "val_acc1": float("nan"), "best_val_acc1": float("nan"), "epochs": 0, "error": str(r.error)[:300]})
            continue
        hist = r.metrics_dataframe
        best = float(hist["val_acc1"].max()) if hist is not None and len(hist) else float("nan")
        rows.append({**conf, "val_acc1": metrics.get("val_acc1"), "best_val_acc1": best, "epochs": metrics.get("epoch"), "error": ""})
    rows.sort(key=lambda x: -(x["best_val_acc1"] if x["best_val_acc1"] == x["best_val_acc1"] else -1.0))
    _write(out, rows, cfg)
    return rows, rows[0]


def _seeded_search(seed: int):
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed)


def _write(out: Path, rows: list[dict[str, Any]], cfg: TuneConfig) -> None:
    import csv

    from ferbatch.atomic import atomic_target, write_json_atomic

    keys = ["lr", "width", "aug", "label_mode", "class_weight", "val_acc1", "best_val_acc1", "epochs", "error"]
    with atomic_target(out / "results.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    best = rows[0]
    write_json_atomic(
        out / "best_config.json",
        {
            "config": {k: best[k] for k in ("lr", "width", "aug", "label_mode", "class_weight")},
            "best_val_acc1": best["best_val_acc1"],
            "epochs": best["epochs"],
            "search": asdict(cfg),
            # the options ferbatch train has today; lr, aug and class_weight are TrainConfig fields or search-only
            "train_command": f"ferbatch train --width {best['width']} --label-mode {best['label_mode']}",
        },
    )
