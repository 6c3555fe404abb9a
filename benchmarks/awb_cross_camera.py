"""Cross-camera AWB proxies we can run offline: how a checkpoint does on cameras and colour spaces it never saw.

Three test sets, each scored for the model(s) and the classical baselines (recovery angular error, degrees):

1. ``lco-synthetic``: the recipe's own leave-cameras-out test split (``AWBDataModule`` synthetic test scenes,
   rendered through pool cameras that training never sees).
2. ``srgb-planckian``: real photos (scikit-image's astronaut, chelsea, coffee, rocket, motorcycle; Matplotlib's
   Grace Hopper; scikit-learn's china and flower when installed), linearised (inverse sRGB curve), cast by
   black-body lights 2500-10000 K *in linear sRGB* (the identity "camera"), each image divided by its maximum, at
   64 x 64 (the full frame and three crops per photo).
3. ``photos-lco-raw``: the same photos taken into the raw space of the held-out test cameras (sRGB -> XYZ ->
   camera, the photo's white being D65) and lit by daylight / black-body / lamp spectra through those cameras'
   sensitivities (von Kries in camera space, as ``isp.unprocess`` does): real image statistics, unseen cameras.

Pixels clipped in the sRGB photos (any channel at 255) are zeroed before resizing (masked, as raw readers zero
saturated pixels: cast by a light, a clipped white would be a pixel of exactly the light's colour, a gift to
max-RGB that real raw files do not give); set 2 is the issue's "real sRGB photos" check run on the
photos that ship with our dependencies. Camera-aware checkpoints get a second row with the camera given (its
least-squares XYZ -> raw matrix; for set 2, XYZ -> linear sRGB).

    python benchmarks/awb_cross_camera.py --ckpt runs/awb/lightning_logs/version_0/checkpoints/best.ckpt \\
        [--ckpt other.ckpt ...] [--output bench/awb_cross_camera.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from moto_vision.data import AWBDataModule
from moto_vision.isp import SRGB_TO_XYZ, XYZ_TO_SRGB, planckian_illuminant, srgb_to_linear
from moto_vision.isp.spectral import camera_response, daylight_spd, fit_xyz_to_raw, planck_spd, spectral_data
from moto_vision.metrics.angular import error_statistics, recovery_angular_error
from moto_vision.models.awb import BASELINES, create_baseline

SIZE = 64
CLIPPED = 254.5 / 255.0
STATS = ("mean", "median", "worst25")


def load_photos() -> list[np.ndarray]:
    """Natural colour photos that ship with our dependencies, as float arrays in [0, 1] (H, W, 3)."""
    photos: list[np.ndarray] = []
    from skimage import data

    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        photos.append(getattr(data, name)())
    photos.append(data.stereo_motorcycle()[0])
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        from PIL import Image

        photos.append(np.asarray(Image.open(f).convert("RGB")))
    try:
        from sklearn.datasets import load_sample_images

        photos.extend(load_sample_images().images)
    except ImportError:
        pass
    return [p.astype(np.float32) / 255.0 for p in photos]


def crops(photo: np.ndarray, generator: torch.Generator, n: int = 3) -> torch.Tensor:
    """The full frame and ``n`` random crops (30-70% of each side), area-resized to 64 x 64: ``(n + 1, 3, 64, 64)``."""
    x = torch.from_numpy(photo).permute(2, 0, 1)[None]
    # Clipped pixels of the sRGB photo are zeroed (masked), as raw readers zero saturated pixels: cast by a light,
    # a clipped white would otherwise become a pixel of exactly the light's colour, which no raw file offers.
    x = x * (x.amax(dim=1, keepdim=True) < CLIPPED)
    out = [F.interpolate(x, size=(SIZE, SIZE), mode="area")]
    h, w = x.shape[-2:]
    for _ in range(n):
        fh, fw = (0.3 + 0.4 * torch.rand(2, generator=generator)).tolist()
        ch, cw = int(h * fh), int(w * fw)
        top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
        out.append(F.interpolate(x[..., top : top + ch, left : left + cw], size=(SIZE, SIZE), mode="area"))
    return torch.cat(out)


def _max_normalise(image: torch.Tensor) -> torch.Tensor:
    return image / image.flatten(1).amax(dim=1).clamp_min(1e-6)[:, None, None, None]


def srgb_planckian(photos: list[np.ndarray], seed: int = 0, lights: int = 10) -> tuple[torch.Tensor, ...]:
    """Set 2: linear sRGB photos cast by black-body lights in linear sRGB (the identity colour space)."""
    g = torch.Generator().manual_seed(seed)
    images, labels = [], []
    cct = torch.exp(torch.linspace(math.log(2500.0), math.log(10000.0), lights))
    light = planckian_illuminant(cct.double()).float()  # (lights, 3) unit norm, linear sRGB
    for photo in photos:
        linear = srgb_to_linear(crops(photo, g))
        for k in range(lights):
            gains = light[k] / light[k].mean()
            images.append(_max_normalise((linear * gains[None, :, None, None]).clamp(0, None)).clamp(0, 1))
            labels.append(light[k].expand(linear.shape[0], 3))
    images_, labels_ = torch.cat(images), torch.cat(labels)
    # The identity "camera": linear sRGB is XYZ -> sRGB.
    return images_, labels_, XYZ_TO_SRGB.float().expand(len(images_), 3, 3)


def photos_in_cameras(
    photos: list[np.ndarray], sensitivities: torch.Tensor, seed: int = 0, lights_per_crop: int = 3
) -> tuple[torch.Tensor, ...]:
    """Set 3: photos taken into held-out cameras' raw spaces and lit by light spectra through their sensitivities."""
    g = torch.Generator().manual_seed(seed)
    data = spectral_data()
    matrices = fit_xyz_to_raw(sensitivities).float()  # (C, 3, 3)
    d65 = daylight_spd(6504.0)
    white_d65 = camera_response(sensitivities, d65).float()  # (C, 3)
    images, labels, cameras = [], [], []
    for photo in photos:
        linear = srgb_to_linear(crops(photo, g))  # white-balanced: a white surface is sRGB (1, 1, 1) = D65
        for _ in range(lights_per_crop):
            cam = int(torch.randint(len(sensitivities), (1,), generator=g))
            kind = int(torch.randint(3, (1,), generator=g))
            u = float(torch.rand(1, generator=g))
            if kind == 0:
                spd = daylight_spd(1e6 / (1e6 / 12000 + (1e6 / 4000 - 1e6 / 12000) * u))
            elif kind == 1:
                spd = planck_spd(1e6 / (1e6 / 7000 + (1e6 / 2500 - 1e6 / 7000) * u))
            else:
                spd = data["lights"][int(u * len(data["lights"]))]
            to_raw = (matrices[cam] @ SRGB_TO_XYZ.float()).float()
            raw = torch.einsum("ij,bjhw->bihw", to_raw, linear).clamp_min(0)
            light = camera_response(sensitivities[cam], spd).float()
            gains = light / white_d65[cam]
            raw = raw * (gains / gains.mean())[None, :, None, None]
            images.append(_max_normalise(raw).clamp(0, 1))
            labels.append(F.normalize(light, dim=0).expand(raw.shape[0], 3))
            cameras.append(matrices[cam].expand(raw.shape[0], 3, 3))
    return torch.cat(images), torch.cat(labels), torch.cat(cameras)


def lco_synthetic(size: int = 512, seed: int = 0) -> tuple[tuple[torch.Tensor, ...], AWBDataModule]:
    """Set 1: the synthetic test split of the recipe's datamodule (held-out cameras)."""
    data = AWBDataModule(train_size=1, val_size=1, test_size=size, seed=seed)
    data.setup("test")
    items = data.test_dataset.__getitems__(list(range(size)))
    return tuple(torch.stack([i[k] for i in items]) for k in ("image", "illuminant", "camera")), data


def score(
    estimator, images: torch.Tensor, labels: torch.Tensor, cameras: torch.Tensor | None = None, batch: int = 256
) -> dict[str, float]:
    """Recovery-error statistics of ``estimator`` (called as ``estimator(x)`` or ``estimator(x, camera)``)."""
    with torch.no_grad():
        estimates = torch.cat(
            [
                estimator(images[i : i + batch])
                if cameras is None
                else estimator(images[i : i + batch], cameras[i : i + batch])
                for i in range(0, len(images), batch)
            ]
        )
    errors = recovery_angular_error(estimates.double(), labels.double())
    stats = error_statistics(errors)
    return {k: float(stats[k]) for k in STATS}


def test_sets(seed: int = 0) -> dict[str, tuple[torch.Tensor, ...]]:
    """The three proxy sets: ``{name: (images (N, 3, 64, 64), illuminants (N, 3), cameras (N, 3, 3))}``."""
    photos = load_photos()
    lco, data = lco_synthetic(seed=seed)
    test_cameras = data.camera_pools["test"].sensitivities
    return {
        "lco-synthetic": lco,
        "srgb-planckian": srgb_planckian(photos, seed),
        "photos-lco-raw": photos_in_cameras(photos, test_cameras, seed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", action="append", default=[], help="AWBRegressor checkpoint (repeatable)")
    parser.add_argument("--name", action="append", default=[], help="row name per --ckpt")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from moto_vision.tasks import AWBRegressor

    sets = test_sets(args.seed)
    methods: dict[str, object] = {name: create_baseline(name) for name in BASELINES}
    for k, path in enumerate(args.ckpt):
        name = args.name[k] if k < len(args.name) else Path(path).parent.parent.name + "/" + Path(path).stem
        methods[name] = AWBRegressor.load_from_checkpoint(path, map_location="cpu").eval()
    results = {m: {s: score(est, *sets[s][:2]) for s in sets} for m, est in methods.items()}
    for m, est in list(methods.items()):
        if getattr(est, "camera_head", None) is not None:  # camera-aware: also with the camera given
            results[m + " + camera"] = {s: score(est, *sets[s]) for s in sets}
    header = "| method | " + " | ".join(f"{s} {k}" for s in sets for k in ("mean", "med", "W25")) + " |"
    print("images: " + ", ".join(f"{s} {len(v[0])}" for s, v in sets.items()))
    print(header)
    print("|---|" + "---:|" * (3 * len(sets)))
    for m, row in results.items():
        print(f"| {m} | " + " | ".join(f"{row[s][k]:.2f}" for s in sets for k in STATS) + " |")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
