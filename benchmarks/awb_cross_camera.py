"""Cross-camera AWB proxies we can run offline: how a checkpoint does on cameras and colour spaces it never saw.

Three test sets, each scored for the model(s) and the classical baselines (recovery angular error, degrees), with
95% bootstrap confidence intervals:

1. ``lco-synthetic``: the recipe's own leave-cameras-out test split (``AWBDataModule`` synthetic test scenes,
   rendered through pool cameras that training never sees; the bootstrap resamples scenes).
2. ``srgb-planckian``: real photos, linearised (inverse sRGB curve), cast by black-body lights 2500-10000 K *in
   linear sRGB* (the identity "camera"): the issue's real-sRGB check.
3. ``photos-lco-raw``: the same photos taken into the raw space of the held-out test cameras (sRGB -> XYZ ->
   camera, the photo's white being D65) and lit by daylight / black-body / lamp spectra through those cameras'
   sensitivities (von Kries in camera space, as ``isp.unprocess`` does): real image statistics, unseen cameras.

With ``--camera SPEC`` (what ``--data.camera`` takes: a pool camera's name, 9 numbers, a matrix or sensitivity
file), two more sets for that one sensor, to score a model trained for it: ``synthetic-camera`` (the one-sensor
datamodule's test split, 512 scenes) and ``photos-camera-raw`` (the photos in that camera's raw space, as set 3).

Leave photos out: ``--photo-fold K`` scores the photo sets on fold ``K``'s photos only (``--photo-folds``, default 2,
by a stable hash of each photo's name), and ``--write-photos DIR --photo-fold K`` puts fold ``K``'s photos in
``DIR`` to train on (``--data.format photos``), so a model trained on one fold is scored on another.

The photos are the eight that ship with our dependencies (scikit-image, Matplotlib, scikit-learn) plus every file
of ``benchmarks/awb_photos.txt`` that is installed (34 real photographs of Debian's wallpaper packages; the file
says how to install them and how they were chosen) and any ``--photos`` folder. They are benchmark input only:
never in the repository, never training data (except one fold's, to be scored on the other: ``--write-photos``).
Each photo gives its full frame and three crops (30-70% of each side), each cast by several lights. The
preprocessing follows the held-out real-raw protocol (a DSLR's raw photos, black level subtracted, colour chart
zeroed, 64 x 64, divided by the maximum):

- the cast image is made at the photo's own resolution (capped at 4 MP by area averaging) and *then* area-averaged
  to 64 x 64, so edges and small highlights are mixed as in a thumbnail of a 12 MP raw frame;
- pixels clipped in the sRGB photo (any channel at 255) were brighter than the JPEG could hold: they get 1-4 times
  (log-uniform per image) the JPEG's white, in the light's colour;
- exposure as a camera sets it: the brightest pixel at the sensor's white (half of the images), or brighter, up to
  1% of the pixels clipped, every channel clipping at the same level (a raw sensor's white), so a clipped highlight
  drifts to white rather than keeping the light's colour;
- half of the images have a zeroed rectangle of 3-12% of the frame, like a masked colour chart;
- each image is divided by its maximum.

The bootstrap (``--bootstrap``, default 1000 draws) resamples *photos* (all images of a drawn photo together), so
the intervals say how much the figures would move with other photos; ``Δ`` columns are paired differences against
max-RGB White Patch on the same draws. Camera-aware checkpoints get a second row with the camera given (its
least-squares XYZ -> raw matrix; for set 2, XYZ -> linear sRGB). A ``MultiTaskPerception`` checkpoint is scored by
its ``"awb"`` output.

    python benchmarks/awb_cross_camera.py --ckpt runs/awb/lightning_logs/version_0/checkpoints/best.ckpt \\
        [--ckpt other.ckpt ...] [--photos DIR] [--output bench/awb_cross_camera.json] [--cache /tmp/awb_sets.pt] \\
        [--votes]   # how each checkpoint weighs its classical votes
    python benchmarks/awb_cross_camera.py --camera "Canon EOS R6" --ckpt one_sensor.ckpt --cache /tmp/awb_sets.pt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from moto_vision.data import AWBDataModule
from moto_vision.isp import SRGB_TO_XYZ, XYZ_TO_SRGB, planckian_illuminant, srgb_to_linear
from moto_vision.isp.spectral import camera_response, daylight_spd, fit_xyz_to_raw, planck_spd, spectral_data
from moto_vision.metrics.angular import error_statistics, recovery_angular_error
from moto_vision.models.awb import (
    BASELINE_TITLES,
    BASELINES,
    CLASSICAL_ESTIMATES,
    ConfidencePoolingHead,
    create_baseline,
)

SIZE = 64
PHOTO_LIST = Path(__file__).with_name("awb_photos.txt")
MAX_PIXELS = 4_000_000
CLIPPED = 254.5 / 255.0
STATS = ("mean", "median", "worst25")
REFERENCE = "white_patch"
SYNTHETIC_SETS = ("lco-synthetic", "synthetic-camera")  # their groups are scenes, not photos
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}


@dataclass
class Photo:
    """A real photo in linear sRGB at <= 4 MP: ``linear`` ``(3, H, W)``, share of sRGB-clipped pixels ``(H, W)``."""

    name: str
    linear: Tensor
    clipped: Tensor


def _photo(name: str, srgb: np.ndarray) -> Photo:
    """Linearise an 8-bit sRGB photo ``(H, W, 3)`` and area-average it to at most :data:`MAX_PIXELS`."""
    x = torch.from_numpy(np.array(srgb[..., :3])).permute(2, 0, 1).float() / 255.0
    clipped = (x.amax(dim=0) >= CLIPPED).float()
    linear = srgb_to_linear(x)
    h, w = linear.shape[-2:]
    factor = math.ceil(math.sqrt(h * w / MAX_PIXELS))
    if factor > 1:  # area averaging by an integer factor: every output pixel mixes factor^2 input pixels
        h, w = h // factor * factor, w // factor * factor
        linear = F.avg_pool2d(linear[None, :, :h, :w], factor)[0]
        clipped = F.avg_pool2d(clipped[None, None, :h, :w], factor)[0, 0]
    return Photo(name, linear, clipped)


def dependency_photo_arrays() -> list[tuple[str, np.ndarray]]:
    """``(name, 8-bit sRGB (H, W, 3))`` of the natural colour photos that ship with our dependencies."""
    from PIL import Image
    from skimage import data

    photos = [(name, getattr(data, name)()) for name in ("astronaut", "chelsea", "coffee", "rocket")]
    photos.append(("motorcycle", data.stereo_motorcycle()[0]))
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        photos.append(("grace_hopper", np.asarray(Image.open(f).convert("RGB"))))
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        return photos
    return photos + list(zip(("china", "flower"), load_sample_images().images))


def dependency_photos() -> list[Photo]:
    """The natural colour photos that ship with our dependencies (scikit-image, Matplotlib, scikit-learn)."""
    return [_photo(name, array) for name, array in dependency_photo_arrays()]


def photo_name(path: Path) -> str:
    """A photo file's name in the tables: its stem, or its package's name for ``<name>/contents/images/*``."""
    return path.stem if path.parent.name != "images" else path.parents[2].name


def photo_fold(name: str, folds: int = 2) -> int:
    """The leave-photos-out fold of a photo (a stable hash of its name, so adding photos moves none)."""
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big") % folds


def listed_files(path: Path = PHOTO_LIST) -> tuple[list[Path], list[Path]]:
    """``(installed, missing)`` files of a photo list (one path per line, ``#`` comments)."""
    paths = [Path(line.split("#")[0].strip()) for line in path.read_text().splitlines() if line.split("#")[0].strip()]
    return [p for p in paths if p.is_file()], [p for p in paths if not p.is_file()]


def folder_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted)."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())


def load_photos(files: Iterable[Path], with_dependencies: bool = True) -> list[Photo]:
    """The dependency photos and ``files``, decoded as 8-bit sRGB."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # wallpapers are large, trusted local files
    photos = dependency_photos() if with_dependencies else []
    for path in files:
        with Image.open(path) as image:
            photos.append(_photo(photo_name(path), np.asarray(image.convert("RGB"))))
    return photos


def _crop_boxes(h: int, w: int, g: torch.Generator, n: int = 3) -> list[tuple[int, int, int, int]]:
    """The full frame and ``n`` random crops of 30-70% of each side: ``(top, left, height, width)``."""
    boxes = [(0, 0, h, w)]
    for _ in range(n):
        fh, fw = (0.3 + 0.4 * torch.rand(2, generator=g)).tolist()
        ch, cw = int(h * fh), int(w * fw)
        boxes.append(
            (
                int(torch.randint(0, h - ch + 1, (1,), generator=g)),
                int(torch.randint(0, w - cw + 1, (1,), generator=g)),
                ch,
                cw,
            )
        )
    return boxes


def _crops(photos: list[Photo], g: torch.Generator) -> Iterator[tuple[int, Tensor, Tensor]]:
    """``(photo index, linear crop, clipped share)`` of every photo's full frame and crops (:func:`_crop_boxes`)."""
    for index, photo in enumerate(photos):
        for top, left, ch, cw in _crop_boxes(*photo.linear.shape[-2:], g):
            yield (
                index,
                photo.linear[:, top : top + ch, left : left + cw],
                photo.clipped[top : top + ch, left : left + cw],
            )


def capture(scene: Tensor, clipped: Tensor, g: torch.Generator) -> Tensor:
    """A 64 x 64 raw thumbnail of a lit scene ``(3, H, W)`` (linear, any scale), as the held-out protocol makes one.

    Pixels clipped in the sRGB photo (``clipped``: their share per pixel) were brighter than the JPEG could hold:
    they get ``t`` times the JPEG's white (``t`` log-uniform in 1-4 per image) in the light's colour. The exposure
    puts the brightest pixel at the sensor's white (half of the images), or clips up to 1% of the pixels, each
    channel at the same level as a raw sensor does. Half of the images get a zeroed rectangle (a masked chart) of
    3-12% of the frame; then area averaging to 64 x 64 and division by the maximum.
    """
    headroom = math.exp(math.log(4.0) * float(torch.rand(1, generator=g)))
    scene = scene * (1.0 + (headroom - 1.0) * clipped)
    peak = scene.amax(dim=0).flatten()
    over = 0.0 if float(torch.rand(1, generator=g)) < 0.5 else 0.01 * float(torch.rand(1, generator=g))
    sample = peak[:: max(1, peak.numel() // 200_000)]
    level = float(torch.quantile(sample, 1.0 - over)) if over > 0 else float(peak.max())
    raw = (scene / max(level, 1e-12)).clamp(0.0, 1.0)
    if float(torch.rand(1, generator=g)) < 0.5:
        h, w = raw.shape[-2:]
        area = 0.03 + 0.09 * float(torch.rand(1, generator=g))
        ch = min(h, int(math.sqrt(area * h * w / 1.5)))
        cw = min(w, int(1.5 * ch))
        top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
        raw = raw.clone()
        raw[:, top : top + ch, left : left + cw] = 0.0
    small = F.interpolate(raw[None], size=(SIZE, SIZE), mode="area")[0]
    return small / small.max().clamp_min(1e-8)


def srgb_planckian(photos: list[Photo], seed: int = 0, lights: int = 6) -> tuple[Tensor, ...]:
    """Set 2: linear sRGB photos cast by black-body lights in linear sRGB (the identity colour space)."""
    g = torch.Generator().manual_seed(seed)
    cct = torch.exp(torch.linspace(math.log(2500.0), math.log(10000.0), lights))
    light = planckian_illuminant(cct.double()).float()  # (lights, 3) unit norm, linear sRGB
    images, labels, groups = [], [], []
    for index, crop, clipped in _crops(photos, g):
        for k in range(lights):
            images.append(capture(crop * light[k][:, None, None], clipped, g))
            labels.append(light[k])
            groups.append(index)
    n = len(images)
    # The identity "camera": linear sRGB is XYZ -> sRGB.
    return torch.stack(images), torch.stack(labels), XYZ_TO_SRGB.float().expand(n, 3, 3), torch.tensor(groups)


def photos_in_cameras(
    photos: list[Photo], sensitivities: Tensor, seed: int = 0, lights_per_crop: int = 3
) -> tuple[Tensor, ...]:
    """Set 3: photos taken into held-out cameras' raw spaces and lit by light spectra through their sensitivities."""
    g = torch.Generator().manual_seed(seed)
    data = spectral_data()
    matrices = fit_xyz_to_raw(sensitivities).float()  # (C, 3, 3)
    white_d65 = camera_response(sensitivities, daylight_spd(6504.0)).float()  # (C, 3)
    images, labels, cameras, groups = [], [], [], []
    for index, crop, clipped in _crops(photos, g):  # white-balanced photos: a white surface is sRGB 1 = D65
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
            light = camera_response(sensitivities[cam], spd).float()
            to_raw = torch.diag(light / white_d65[cam]) @ matrices[cam] @ SRGB_TO_XYZ.float()
            scene = torch.einsum("ij,jhw->ihw", to_raw, crop).clamp_min(0)
            images.append(capture(scene, clipped, g))
            labels.append(F.normalize(light, dim=0))
            cameras.append(matrices[cam])
            groups.append(index)
    return torch.stack(images), torch.stack(labels), torch.stack(cameras), torch.tensor(groups)


def lco_synthetic(
    size: int = 512, seed: int = 0, camera: str | None = None
) -> tuple[tuple[Tensor, ...], AWBDataModule]:
    """Set 1: the synthetic test split of the recipe's datamodule (held-out cameras); every scene is its own group.

    With ``camera`` (a ``--data.camera`` value), the one-sensor datamodule's test split instead.
    """
    data = AWBDataModule(train_size=1, val_size=1, test_size=size, seed=seed, camera=camera)
    data.setup("test")
    items = data.test_dataset.__getitems__(list(range(size)))
    tensors = tuple(torch.stack([i[k] for i in items]) for k in ("image", "illuminant", "camera"))
    return (*tensors, torch.arange(size)), data


def test_sets(photos: list[Photo], seed: int = 0) -> dict[str, tuple[Tensor, ...]]:
    """The three proxy sets: ``{name: (images (N, 3, 64, 64), illuminants (N, 3), cameras (N, 3, 3), groups (N,))}``."""
    lco, data = lco_synthetic(seed=seed)
    test_cameras = data.camera_pools["test"].sensitivities
    return {
        "lco-synthetic": lco,
        "srgb-planckian": srgb_planckian(photos, seed),
        "photos-lco-raw": photos_in_cameras(photos, test_cameras, seed),
    }


def errors_of(
    estimator: Callable[..., Tensor], images: Tensor, labels: Tensor, cameras: Tensor | None = None, batch: int = 256
) -> Tensor:
    """Per-image recovery errors of ``estimator`` (called as ``estimator(x)`` or ``estimator(x, camera)``)."""
    with torch.no_grad():
        estimates = torch.cat(
            [
                estimator(images[i : i + batch])
                if cameras is None
                else estimator(images[i : i + batch], cameras[i : i + batch])
                for i in range(0, len(images), batch)
            ]
        )
    return recovery_angular_error(estimates.double(), labels.double())


def _statistics(errors: Tensor) -> dict[str, float]:
    stats = error_statistics(errors)
    return {k: float(stats[k]) for k in STATS}


def bootstrap(
    errors: dict[str, Tensor], groups: Tensor, draws: int = 1000, seed: int = 0
) -> dict[str, dict[str, list[float]]]:
    """95% percentile intervals of each method's statistics and of its paired difference to max-RGB White Patch.

    Groups (photos, or scenes) are resampled with replacement, every image of a drawn group kept, the same draws for
    every method. Returns ``{method: {stat: [lo, hi], "d_<stat>": [estimate, lo, hi]}}``.
    """
    ids = groups.unique()
    members = [torch.nonzero(groups == i).flatten() for i in ids]
    g = torch.Generator().manual_seed(seed)
    samples: dict[str, dict[str, list[float]]] = {m: {k: [] for k in STATS} for m in errors}
    for _ in range(draws):
        pick = torch.cat([members[int(i)] for i in torch.randint(len(ids), (len(ids),), generator=g)])
        for m, e in errors.items():
            for k, v in _statistics(e[pick]).items():
                samples[m][k].append(v)
    out: dict[str, dict[str, list[float]]] = {}
    for m in errors:
        out[m] = {}
        for k in STATS:
            values = np.asarray(samples[m][k])
            out[m][k] = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
            if REFERENCE in errors:
                diff = values - np.asarray(samples[REFERENCE][k])
                point = _statistics(errors[m])[k] - _statistics(errors[REFERENCE])[k]
                out[m][f"d_{k}"] = [point, float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))]
    return out


def evaluate(
    methods: dict[str, Callable[..., Tensor]], sets: dict[str, tuple[Tensor, ...]], draws: int = 1000, seed: int = 0
) -> dict[str, dict[str, dict]]:
    """``{set: {method: {"mean", "median", "worst25", "ci": {...}}}}``.

    Camera-aware models get a second row, ``<name> + camera``, with the camera given.
    """
    results: dict[str, dict[str, dict]] = {}
    for set_name, (images, labels, cameras, groups) in sets.items():
        plain = {m: est for m, est in methods.items() if not getattr(est, "camera_only", False)}
        errors = {m: errors_of(est, images, labels) for m, est in plain.items()}
        for m, est in methods.items():
            if getattr(est, "takes_camera", False):  # camera-aware: also with the camera given
                errors[m + " + camera"] = errors_of(est, images, labels, cameras)
        intervals = bootstrap(errors, groups, draws, seed) if draws > 0 else {}
        results[set_name] = {m: {**_statistics(e), "ci": intervals.get(m, {})} for m, e in errors.items()}
    return results


def _cell(row: dict, key: str) -> str:
    ci = row["ci"].get(key)
    return f"{row[key]:.2f}" if ci is None else f"{row[key]:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def _delta(row: dict, key: str) -> str:
    d = row["ci"].get(f"d_{key}")
    return "" if d is None else f"{d[0]:+.2f} [{d[1]:+.2f}, {d[2]:+.2f}]"


def format_results(results: dict[str, dict[str, dict]], sets: dict[str, tuple[Tensor, ...]]) -> str:
    """One Markdown table per set: mean, median and worst 25% with their intervals, and the paired Δ to max-RGB."""
    lines = []
    for set_name, rows in results.items():
        images, groups = sets[set_name][0], sets[set_name][3]
        lines += [f"\n{set_name}: {len(images)} images from {len(groups.unique())} groups (95% bootstrap intervals)\n"]
        lines += [
            "| method | mean | median | worst 25% | Δmean vs max-RGB | Δmedian vs max-RGB |",
            "|---|---|---|---|---|---|",
        ]
        for m, r in rows.items():
            cells = [_cell(r, k) for k in STATS] + ["" if m == REFERENCE else _delta(r, k) for k in ("mean", "median")]
            lines.append(f"| {BASELINE_TITLES.get(m, m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def camera_sets(photos: list[Photo], camera: str, seed: int = 0) -> dict[str, tuple[Tensor, ...]]:
    """The two one-sensor sets of ``--camera``: its synthetic test split and the photos in its raw space."""
    synthetic, data = lco_synthetic(seed=seed, camera=camera)
    return {
        "synthetic-camera": synthetic,
        "photos-camera-raw": photos_in_cameras(photos, data.camera_pools["test"].sensitivities, seed),
    }


def _camera_cache(cache: Path, camera: str) -> Path:
    slug = "".join(c if c.isalnum() else "-" for c in camera)[:60].strip("-")
    return cache.with_name(f"{cache.stem}-camera-{slug}{cache.suffix}")


def build_sets(args: argparse.Namespace) -> dict[str, tuple[Tensor, ...]]:
    """Load the photos and build the three sets, and with ``--camera`` its two (or read them from ``--cache``)."""
    camera_cache = _camera_cache(args.cache, args.camera) if args.cache and args.camera else None
    sets = _cached(args.cache)
    extra = _cached(camera_cache) if args.camera else {}
    if sets is None or extra is None:
        photos = _load_photos(args)
        if sets is None:
            sets = _saved(test_sets(photos, args.seed), args.cache)
        if extra is None:
            extra = _saved(camera_sets(photos, args.camera, args.seed), camera_cache)
    return {**sets, **extra}


def _cached(path: Path | None) -> dict[str, tuple[Tensor, ...]] | None:
    return torch.load(path, weights_only=True) if path is not None and path.is_file() else None


def _saved(sets: dict[str, tuple[Tensor, ...]], path: Path | None) -> dict[str, tuple[Tensor, ...]]:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(sets, path)
    return sets


def _photo_files(args: argparse.Namespace) -> tuple[list[Path], int]:
    """``(files, how many of them are listed)``: the listed photos that are installed (a warning names the missing
    ones), then those of ``--photos``."""
    installed, missing = listed_files(args.photo_list)
    if missing:
        warnings.warn(
            f"{len(missing)} of the photos in {args.photo_list} are not installed (e.g. {missing[0]}); install them "
            "with the apt-get line at the top of that file for the full benchmark.",
            stacklevel=1,
        )
    files = list(installed)
    for folder in args.photos:
        files += folder_files(folder)
    return files, len(installed)


def _load_photos(args: argparse.Namespace) -> list[Photo]:
    files, listed = _photo_files(args)
    photos = load_photos(files)
    print(f"{len(photos)} photos ({listed} of the list, {len(files) - listed} from --photos)")
    return photos


def photo_names(files: list[Path]) -> list[str]:
    """The names of the photos :func:`load_photos` loads from ``files``, in its order (the photo sets' groups)."""
    return [name for name, _ in dependency_photo_arrays()] + [photo_name(path) for path in files]


def keep_photo_fold(
    sets: dict[str, tuple[Tensor, ...]], names: list[str], fold: int, folds: int
) -> dict[str, tuple[Tensor, ...]]:
    """The sets with only the images of fold ``fold``'s photos in the photo sets (synthetic sets unchanged)."""
    out = {}
    for set_name, (images, labels, cameras, groups) in sets.items():
        if set_name in SYNTHETIC_SETS:
            out[set_name] = (images, labels, cameras, groups)
            continue
        keep = torch.tensor([photo_fold(names[int(g)], folds) == fold for g in groups], dtype=torch.bool)
        out[set_name] = (images[keep], labels[keep], cameras[keep], groups[keep])
    return out


def write_photo_fold(folder: Path, files: list[Path], fold: int, folds: int) -> int:
    """Put fold ``fold``'s photos in ``folder`` (links to the files, PNGs of the dependency photos) to train on."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for name, array in dependency_photo_arrays():
        if photo_fold(name, folds) == fold:
            Image.fromarray(np.asarray(array[..., :3], dtype=np.uint8)).save(folder / f"{name}.png")
            count += 1
    for path in files:
        if photo_fold(photo_name(path), folds) == fold:
            link = folder / f"{photo_name(path)}{path.suffix.lower()}"
            link.unlink(missing_ok=True)
            link.symlink_to(path.resolve())
            count += 1
    return count


def vote_report(name: str, model: nn.Module, sets: dict[str, tuple[Tensor, ...]]) -> str:
    """How a classical-votes model uses its votes on each set, as Markdown (``--votes``).

    Per vote: its error alone (mean / median), after the learned gain, the share of images where it is the best of
    the K, and its mean weight in the deployed model; then the best vote per image (the oracle of the K) and the mean
    of each image's largest weight (1: the model picks one vote, 1 / K: it averages them).
    """
    head = next((m for m in model.modules() if isinstance(m, ConfidencePoolingHead) and m.classical_votes), None)
    if head is None:
        return f"\n{name}: no classical votes\n"
    lines = [f"\n{name}: the classical votes (recovery error alone mean / median, degrees)\n"]
    for set_name, (images, labels, _, _) in sets.items():
        with torch.no_grad():
            estimates, gained, weights = head.classical_weights(None, images)
        alone = torch.stack([recovery_angular_error(estimates[:, k], labels) for k in range(estimates.shape[1])], 1)
        after = torch.stack([recovery_angular_error(gained[:, k], labels) for k in range(gained.shape[1])], 1)
        best = alone.argmin(dim=1)
        oracle = alone.min(dim=1).values
        lines += [
            f"{set_name}: oracle of the {alone.shape[1]} {oracle.mean():.2f} / {oracle.median():.2f}, mean largest "
            f"weight {weights.max(dim=1).values.mean():.2f}\n",
            "| vote | alone | after its gain | best of the votes | mean weight |",
            "|---|---|---|---|---|",
        ]
        for k, vote in enumerate(CLASSICAL_ESTIMATES):
            lines.append(
                f"| {vote} | {alone[:, k].mean():.2f} / {alone[:, k].median():.2f} | {after[:, k].mean():.2f} / "
                f"{after[:, k].median():.2f} | {(best == k).float().mean():.0%} | {weights[:, k].mean():.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


class OnLocus(nn.Module):
    """A classical baseline with the locus prior of ``--locus-band``: scored only with each image's camera.

    So a model's gain from the prior can be told from its own (the prior has no weights and fits any estimate).
    """

    takes_camera = camera_only = True

    def __init__(self, estimator: nn.Module, band: float) -> None:
        super().__init__()
        from moto_vision.models import LocusPrior

        self.estimator = estimator
        self.locus_prior = LocusPrior(band)

    def forward(self, x: Tensor, camera: Tensor) -> Tensor:
        return self.locus_prior(self.estimator(x), camera)


class _AWBOutput(nn.Module):
    """The ``"awb"`` output of a multi-task model, as an estimator ``x -> (B, 3)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)["awb"]


def load_estimator(path: str) -> nn.Module:
    """An ``AWBRegressor`` checkpoint, or the AWB head of a ``MultiTaskPerception`` one, in eval mode.

    Loaded as ``moto-vision export`` loads one (:func:`moto_vision.deploy.source.load_task`: weights only, a recorded
    moto-vision task class, checked arguments and weights); a missing, unreadable or refused file stops the run with
    one line naming it.
    """
    from moto_vision.deploy.source import load_task
    from moto_vision.tasks import AWBRegressor, MultiTaskPerception

    try:
        task, _ = load_task(path)
    except (OSError, ValueError) as error:  # UntrustedCheckpointError is a ValueError
        raise SystemExit(f"--ckpt {path}: {error}") from None
    if isinstance(task, AWBRegressor):
        return task
    if isinstance(task, MultiTaskPerception) and "awb" in task.kits:
        return _AWBOutput(task).eval()
    raise SystemExit(f"--ckpt {path}: a {type(task).__name__} checkpoint without an AWB head; nothing to score.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ckpt",
        action="append",
        default=[],
        help="AWBRegressor checkpoint, or a MultiTaskPerception one (its AWB head is scored; repeatable)",
    )
    parser.add_argument("--name", action="append", default=[], help="row name per --ckpt")
    parser.add_argument("--photos", action="append", type=Path, default=[], help="extra folder of real photos")
    parser.add_argument(
        "--photo-list", type=Path, default=PHOTO_LIST, help="list of photo files (default: %(default)s)"
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap draws (0: no intervals)")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--cache", type=Path, default=None, help="save the built test sets here / load them from here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--camera",
        default=None,
        help="also score on one sensor (what --data.camera takes: a pool camera's name, 9 numbers, a .json / .yaml "
        "matrix, a .csv of sensitivities or one of its DNGs): its synthetic test split and the photos in its raw space",
    )
    parser.add_argument(
        "--votes", action="store_true", help="also report how each checkpoint weighs its classical votes per set"
    )
    parser.add_argument(
        "--photo-fold",
        type=int,
        default=None,
        help="leave photos out: score the photo sets on this fold's photos only (of --photo-folds, by a stable hash "
        "of each photo's name); with --write-photos, the fold to write",
    )
    parser.add_argument("--photo-folds", type=int, default=2, help="number of photo folds (default: %(default)s)")
    parser.add_argument(
        "--locus-band",
        type=float,
        default=None,
        help="give every AWBRegressor checkpoint this locus prior (log-chromaticity band, e.g. 0.05): it then also "
        "gets a '+ camera' row, scored with each image's camera",
    )
    parser.add_argument(
        "--write-photos",
        type=Path,
        default=None,
        help="write --photo-fold's photos into this folder (to train on with --data.format photos) and exit",
    )
    args = parser.parse_args(argv)
    if args.photo_fold is not None and not 0 <= args.photo_fold < args.photo_folds:
        parser.error(f"--photo-fold {args.photo_fold} is outside 0..{args.photo_folds - 1}")
    if args.write_photos is not None:
        if args.photo_fold is None:
            parser.error("--write-photos needs --photo-fold (the fold to train on)")
        count = write_photo_fold(args.write_photos, _photo_files(args)[0], args.photo_fold, args.photo_folds)
        print(f"{count} photos of fold {args.photo_fold} (of {args.photo_folds}) in {args.write_photos}")
        return 0
    torch.set_num_threads(1)
    methods: dict[str, Callable[..., Tensor]] = {name: create_baseline(name) for name in BASELINES}
    if args.camera is not None:  # before the sets are built: a bad camera stops the run at once
        try:
            AWBDataModule(camera=args.camera).synthetic_cameras()  # what --data.camera does with it
        except (ValueError, FileNotFoundError, ModuleNotFoundError) as error:
            parser.exit(2, f"error: --camera {str(error).removeprefix('--data.camera ')}\n")
    if args.locus_band is not None:
        methods[f"{BASELINE_TITLES[REFERENCE]} + locus prior"] = OnLocus(create_baseline(REFERENCE), args.locus_band)
    for k, path in enumerate(args.ckpt):  # before the sets are built: a bad checkpoint stops the run at once
        name = args.name[k] if k < len(args.name) else Path(path).parent.parent.name + "/" + Path(path).stem
        methods[name] = load_estimator(path)
        if args.locus_band is not None and hasattr(methods[name], "set_locus_band"):
            methods[name].set_locus_band(args.locus_band)
    sets = build_sets(args)
    if args.photo_fold is not None:
        sets = keep_photo_fold(sets, photo_names(_photo_files(args)[0]), args.photo_fold, args.photo_folds)
    results = evaluate(methods, sets, args.bootstrap, args.seed)
    print(format_results(results, sets))
    if args.votes:
        for name, method in methods.items():
            if name not in BASELINES and not isinstance(method, OnLocus):
                print(vote_report(name, method, sets))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
