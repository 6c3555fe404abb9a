"""The 24-patch ColorChecker Classic in a linear image: find it, refine its outline, sample its patches.

The chart is described in the geometry of OpenCV's MCC24 model (``CChartModel`` in ``opencv/modules/objdetect``):
a patch box of 16.75 x 11.25 units holding 6 x 4 patches of 2.5 units every 2.75, starting 0.25 inside the box, in
row-major order from "dark skin". :func:`detect_charts` runs OpenCV's ``mcc`` detector
(``opencv-contrib-python-headless``), :func:`refine_box` fits its box to the measured patch centres,
:func:`plausible_box` rejects outlines no chart can have, and :func:`sample_patches` averages the centre of each
patch in the linear image. Used by :mod:`moto_vision.data.curation.label_awb`.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ACHROMATIC_PATCHES",
    "INSET",
    "MODEL_BOX",
    "PATCH",
    "PITCH",
    "box_from_patch_corners",
    "box_homography",
    "detect_charts",
    "model_corners",
    "patch_quads",
    "plausible_box",
    "refine_box",
    "sample_patches",
    "transform",
]

#: ColorChecker patches (0-based, row-major from "dark skin") used for the illuminant: white, neutral 8, 6.5, 5, 3.5.
ACHROMATIC_PATCHES = (18, 19, 20, 21, 22)
#: OpenCV MCC24 chart model (``CChartModel``): the patch box is 16.75 x 11.25 units; patches of 2.5 every 2.75,
#: starting 0.25 inside the box.
MODEL_BOX = (16.75, 11.25)
PATCH, PITCH, INSET = 2.5, 2.75, 0.25


# ------------------------------------------------------------------------------------------------ geometry
def model_corners(margin: float = 0.0) -> np.ndarray:
    """``(4, 2)`` corners of the patch box in chart units, widened by ``margin`` units on every side."""
    w, h = MODEL_BOX
    return np.float32([[-margin, -margin], [w + margin, -margin], [w + margin, h + margin], [-margin, h + margin]])


def box_homography(box: np.ndarray) -> np.ndarray:
    """The 3x3 homography from chart units to the image, given the patch box's ``(4, 2)`` image corners."""
    import cv2

    return cv2.getPerspectiveTransform(model_corners(), np.asarray(box, np.float32))


def transform(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(N, 2)`` points mapped by a homography."""
    import cv2

    return cv2.perspectiveTransform(np.asarray(points, np.float32)[None], homography)[0]


def patch_quads(homography: np.ndarray, share: float) -> np.ndarray:
    """``(24, 4, 2)`` image corners of the central ``share`` of each patch."""
    half = PATCH * share / 2
    quads = []
    for index in range(24):
        row, col = divmod(index, 6)
        cx, cy = INSET + col * PITCH + PATCH / 2, INSET + row * PITCH + PATCH / 2
        quads.append([[cx - half, cy - half], [cx + half, cy - half], [cx + half, cy + half], [cx - half, cy + half]])
    return transform(homography, np.float32(quads).reshape(-1, 2)).reshape(24, 4, 2)


def box_from_patch_corners(corners: np.ndarray) -> np.ndarray:
    """Model-box corners from the outer corners of the patch area (what a person clicks in an override)."""
    import cv2

    w, h = MODEL_BOX
    area = np.float32([[INSET, INSET], [w - INSET, INSET], [w - INSET, h - INSET], [INSET, h - INSET]])
    homography = cv2.getPerspectiveTransform(area, np.asarray(corners, np.float32))
    return transform(homography, model_corners())


def plausible_box(box: np.ndarray) -> bool:
    """Whether a patch box can be a ColorChecker seen in perspective: convex, not tiny, about the model's aspect.

    The detector occasionally returns a self-intersecting or squashed quadrilateral; such a box would sample and
    mask the wrong pixels.
    """
    box = np.asarray(box, np.float64)
    edges = np.roll(box, -1, axis=0) - box
    turns = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    if not (np.all(turns > 0) or np.all(turns < 0)):
        return False
    lengths = np.linalg.norm(edges, axis=1)
    if lengths.min() < 8:
        return False
    long_sides, short_sides = lengths[[0, 2]], lengths[[1, 3]]
    aspect = long_sides.mean() / short_sides.mean()
    ratio = MODEL_BOX[0] / MODEL_BOX[1]
    opposite = max(long_sides.max() / long_sides.min(), short_sides.max() / short_sides.min())
    return 0.6 * ratio < aspect < 1.6 * ratio and opposite < 2.0


# ------------------------------------------------------------------------------------------------ detection
def _display_bgr(image: np.ndarray, neutral: np.ndarray | None) -> np.ndarray:
    """8-bit BGR for the detector: white-balanced by ``neutral`` (grey world without it), gamma 2.2."""
    rgb = np.clip(image, 0, None)
    if neutral is None or not np.all(np.isfinite(neutral)) or np.min(neutral) <= 0:
        neutral = rgb.reshape(-1, 3).mean(axis=0) + 1e-6
    balanced = rgb / (np.asarray(neutral, np.float32) / float(neutral[1]))
    top = float(np.percentile(balanced, 99)) or 1.0
    display = np.clip(balanced / top, 0, 1) ** (1 / 2.2)
    return np.ascontiguousarray((display * 255 + 0.5).astype(np.uint8)[..., ::-1])


def detect_charts(
    image: np.ndarray, neutral: np.ndarray | None = None, max_charts: int = 2, detect_size: int = 1200
) -> list[tuple[np.ndarray, float]]:
    """Find ColorChecker Classic charts with OpenCV's ``mcc`` detector.

    Args:
        image: ``(H, W, 3)`` linear camera RGB.
        neutral: the camera's white (e.g. ``AsShotNeutral``) to balance the detector's view; grey world if ``None``.
        max_charts: how many charts to look for.
        detect_size: the image is shrunk to at most this long side for the detector.

    Returns:
        ``[(box (4, 2), cost), ...]``: corners of the MCC24 patch box (see :data:`MODEL_BOX`) in pixels of
        ``image``, starting at the corner next to the "dark skin" patch, best first; some may be implausible
        (:func:`plausible_box`) until :func:`refine_box` fits them to the patches.
    """
    from moto_vision.data.raw import require_capture

    cv2 = require_capture("cv2")
    height, width = image.shape[:2]
    scale = min(1.0, detect_size / max(height, width))
    small = image
    if scale < 1.0:
        small = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    detector = cv2.mcc.CCheckerDetector.create()
    detector.setColorChartType(cv2.mcc.MCC24)
    if not detector.process(_display_bgr(small, neutral), max_charts):
        return []
    found = [(np.asarray(c.getBox(), np.float64) / scale, float(c.getCost())) for c in detector.getListColorChecker()]
    return sorted(found, key=lambda item: item[1])


def refine_box(image: np.ndarray, box: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Refine a detected patch box from the measured centres of the patches (a homography fitted with RANSAC).

    The detector's box is a few percent of the chart off at times (small or blurred charts); samples near a patch
    edge then mix two colours. Each patch is found as the connected region of its own colour around its predicted
    centre, and the box is refitted to the centroids of the patches whose region stays inside its window (the dark
    patches that merge with the black card are left out by that rule).

    Args:
        image: ``(H, W, 3)`` linear camera RGB.
        box: ``(4, 2)`` patch-box corners (see :data:`MODEL_BOX`).
        iterations: refinement rounds.

    Returns:
        The refined ``(4, 2)`` box (the input box when too few patches are found).
    """
    import cv2

    model = np.float32([[INSET + (i % 6) * PITCH + PATCH / 2, INSET + (i // 6) * PITCH + PATCH / 2] for i in range(24)])
    box = np.asarray(box, np.float64)
    pitch = float(np.linalg.norm(box[1] - box[0])) / MODEL_BOX[0] * PITCH
    if pitch < 6:
        return box  # patches of a few pixels: nothing to gain
    # Work on the chart's neighbourhood only (the box may move by up to a patch or two).
    left, top = np.maximum(np.floor(box.min(axis=0) - 3 * pitch).astype(int), 0)
    right, bottom = np.ceil(box.max(axis=0) + 3 * pitch).astype(int) + 1
    crop = np.clip(image[top:bottom, left:right], 0, None).astype(np.float32)
    smooth = cv2.GaussianBlur(crop, (0, 0), max(0.6, 0.04 * pitch))
    box = box - [left, top]
    height, width = smooth.shape[:2]
    half = int(round(0.75 * pitch))
    for _ in range(iterations):
        predicted = transform(box_homography(box), model)
        found_model, found_image = [], []
        for centre_model, centre in zip(model, predicted):
            cx, cy = int(round(centre[0])), int(round(centre[1]))
            x0, y0, x1, y1 = cx - half, cy - half, cx + half + 1, cy + half + 1
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                continue
            window = smooth[y0:y1, x0:x1]
            r = max(1, int(0.12 * pitch))
            seed = np.median(window[half - r : half + r + 1, half - r : half + r + 1].reshape(-1, 3), axis=0)
            scale = float(seed.sum()) + 1e-6
            distance = np.abs(window - seed).sum(axis=-1) / scale
            inside = (distance < 0.25).astype(np.uint8)
            count, labels = cv2.connectedComponents(inside, connectivity=4)
            component = labels == labels[half, half]
            if not inside[half, half] or component[0].any() or component[-1].any():
                continue  # the centre is off the patch, or the region leaks out of the window (merged with the card)
            if component[:, 0].any() or component[:, -1].any() or component.sum() < 0.25 * (PATCH / PITCH * pitch) ** 2:
                continue
            ys, xs = np.nonzero(component)
            found_model.append(centre_model)
            found_image.append([x0 + xs.mean(), y0 + ys.mean()])
        if len(found_model) < 8:
            break
        homography, inliers = cv2.findHomography(
            np.float32(found_model), np.float32(found_image), cv2.RANSAC, 0.08 * pitch
        )
        if homography is None or int(inliers.sum()) < 8:
            break
        refined = transform(homography, model_corners()).astype(np.float64)
        if not plausible_box(refined) or (plausible_box(box) and np.abs(refined - box).max() > 2 * pitch):
            break  # a fit to the wrong patches; keep the box as it is
        box = refined
    return box + [left, top]


def sample_patches(
    image: np.ndarray, valid: np.ndarray, quads: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean RGB ``(24, 3)``, saturated share ``(24,)`` and pixel count ``(24,)`` inside each quad."""
    import cv2

    x0, y0 = np.floor(quads.reshape(-1, 2).min(axis=0)).astype(int)
    x1, y1 = np.ceil(quads.reshape(-1, 2).max(axis=0)).astype(int) + 1
    crop, crop_valid = image[y0:y1, x0:x1], valid[y0:y1, x0:x1]
    labels = np.zeros(crop.shape[:2], np.int32)
    for index, quad in enumerate(quads):
        cv2.fillConvexPoly(labels, np.round((quad - [x0, y0]) * 16).astype(np.int32), index + 1, cv2.LINE_8, 4)
    flat = labels.reshape(-1)
    counts = np.bincount(flat, minlength=25)[1:].astype(np.float64)
    sums = np.stack([np.bincount(flat, weights=crop[..., c].reshape(-1), minlength=25)[1:] for c in range(3)], 1)
    clipped = np.bincount(flat, weights=(~crop_valid).reshape(-1).astype(np.float64), minlength=25)[1:]
    safe = np.maximum(counts, 1)
    return sums / safe[:, None], clipped / safe, counts
