"""Training-time augmentation of (N, 1, S, S) float32 faces in -1..1 (PyTorch, train split only).

- ``basic`` (v1): horizontal flip, rotation +-10 deg, scale +-10 %, shift +-8 %, brightness and
  contrast +-20 %.
- ``pipeline``: what ferbatch's own crop path feeds the classifier at inference. The detector box
  varies from frame to frame and the crop is ``crop.scale`` x the box, so the face is re-cropped
  at 0.85-1.35 of its extent (log-uniform) around a centre shifted by up to 10 % and rotated by up
  to 15 deg (``affine_grid``, border padding); video faces are blurred, down-then-up sampled and
  JPEG/H.264 compressed, so 25 % get a Gaussian blur (sigma 0.5-1.5 px), 25 % are resized down to
  14-36 px and back (bilinear), 25 % are JPEG-encoded at quality 20-85 (OpenCV); lighting varies,
  so gamma 0.6-1.6 (log-uniform), contrast and brightness +-25 %; hands and hair hide parts of the
  face, so 25 % get one cutout square of 20-45 % of the side (DeVries & Taylor 2017) at mid-gray.
  Probabilities and ranges are engineering choices, not from a paper.
- ``mixup(x, y, alpha)``: convex mixes of images and label distributions (Zhang et al. 2018).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["augment", "mixup", "AUGMENTS"]

AUGMENTS = ("basic", "pipeline")


def _affine(torch, x, ang, sc, tx, ty):
    cos, sin = torch.cos(ang) * sc, torch.sin(ang) * sc
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, padding_mode="border", align_corners=False)


def _blur(torch, x, sigma: float):
    r = max(1, int(math.ceil(2 * sigma)))
    k = torch.exp(-((torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2) / 2)
    k = k / k.sum()
    xp = torch.nn.functional.pad(x, (r, r, r, r), mode="replicate")
    xp = torch.nn.functional.conv2d(xp, k.view(1, 1, 1, -1))
    return torch.nn.functional.conv2d(xp, k.view(1, 1, -1, 1))


def _jpeg(torch, x, quality: int):
    import cv2

    u8 = ((x.squeeze(1).numpy() + 1) * 127.5).clip(0, 255).round().astype(np.uint8)
    out = np.stack(
        [np.asarray(cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_GRAYSCALE)) for im in u8]
    )
    return torch.from_numpy(out).float().unsqueeze(1) / 127.5 - 1


def augment(torch, x, gen, mode: str = "basic"):
    """Augment a batch.

    Args:
        torch: the torch module.
        x: (N, 1, S, S) float32 in -1..1 (not modified).
        gen: ``torch.Generator`` (all randomness comes from it, so runs are reproducible).
        mode: ``basic`` or ``pipeline`` (module docstring).

    Returns:
        (N, 1, S, S) float32 in -1..1.
    """
    n, s = x.shape[0], x.shape[-1]

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*(shape or (n,)), generator=gen)

    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if mode == "basic":
        ang = u(-math.radians(10), math.radians(10))
        sc = 1 / u(0.9, 1.1)
        tx, ty = u(-0.08, 0.08, 2, n)
        x = _affine(torch, x, ang, sc, tx, ty)
        return (x * u(0.8, 1.2, n, 1, 1, 1) + u(-0.2, 0.2, n, 1, 1, 1)).clamp(-1, 1)
    ang = u(-math.radians(15), math.radians(15))
    sc = torch.exp(u(math.log(0.85), math.log(1.35)))  # >1 zooms out: a looser crop
    tx, ty = u(-0.1, 0.1, 2, n)
    x = _affine(torch, x, ang, sc, tx, ty)
    pick = torch.rand(3, n, generator=gen) < 0.25
    if pick[0].any():
        x[pick[0]] = _blur(torch, x[pick[0]], float(u(0.5, 1.5, 1)))
    if pick[1].any():
        small = int(u(14, 37, 1))
        d = torch.nn.functional.interpolate(x[pick[1]], size=(small, small), mode="bilinear", antialias=True, align_corners=False)
        x[pick[1]] = torch.nn.functional.interpolate(d, size=(s, s), mode="bilinear", align_corners=False)
    if pick[2].any():
        x[pick[2]] = _jpeg(torch, x[pick[2]], int(u(20, 86, 1)))
    x01 = ((x + 1) / 2).clamp(0, 1) ** torch.exp(u(math.log(0.6), math.log(1.6), n, 1, 1, 1))
    x = (x01 * 2 - 1) * u(0.75, 1.25, n, 1, 1, 1) + u(-0.25, 0.25, n, 1, 1, 1)
    cut = torch.rand(n, generator=gen) < 0.25
    for i in torch.nonzero(cut).flatten().tolist():
        side = int(u(0.2, 0.45, 1) * s)
        cy, cx = (torch.randint(0, s - side + 1, (2,), generator=gen)).tolist()
        x[i, :, cy : cy + side, cx : cx + side] = 0.0
    return x.clamp(-1, 1)


def mixup(torch, x, y, gen, alpha: float):
    """Mix each sample with a random partner: lam ~ Beta(alpha, alpha) per batch (Zhang et al. 2018).

    Args:
        x: (N, 1, S, S) float32; y: (N, 8) float32 target distributions.

    Returns:
        (x', y') of the same shapes.
    """
    lam = float(np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen))).beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=gen)
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]
