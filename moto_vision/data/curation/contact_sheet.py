"""Contact sheets of ``data label-awb``: every capture, its detected chart and patches, and the corrected preview.

Each tile shows the capture as the phone balanced it (its ``AsShotNeutral``) with the chart's mask polygon
(yellow: found by the detector, cyan: from the override file) and the sampled grey patches (green: used, red:
clipped, orange: too dark), next to the capture corrected with the label through the DNG colour model, the chart
masked out. The caption gives the file, the label's CCT and Duv and how far the phone's own AWB was, or the reason
the capture failed (red).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_contact_sheets"]

_STATUS_COLOURS = {"used": (60, 220, 60), "clipped": (240, 50, 50), "dark": (255, 150, 0), "too_small": (160, 160, 160)}
_CAPTION = 44


def _tile(result: Any, panel: int, sample: float) -> Any:
    from PIL import Image, ImageDraw

    from moto_vision.data.curation.colour_checker import ACHROMATIC_PATCHES, box_homography, patch_quads

    tile = Image.new("RGB", (2 * panel + 6, panel + _CAPTION), (24, 24, 24))
    draw = ImageDraw.Draw(tile)
    thumbs = result.thumbnails or {}
    for slot, name in enumerate(("as_shot", "corrected")):
        array = thumbs.get(name)
        if array is None:
            continue
        image = Image.fromarray(array)
        offset = (slot * (panel + 6) + (panel - image.width) // 2, (panel - image.height) // 2)
        if result.size is not None and result.charts:
            height, width = result.size
            scale = image.width / width
            overlay = ImageDraw.Draw(image)
            for chart in result.charts:
                polygon = [(x * image.width, y * image.height) for x, y in chart.polygon]
                if name == "corrected":
                    overlay.polygon(polygon, fill=(40, 40, 40))
                    continue
                colour = (0, 220, 255) if chart.source == "override" else (255, 230, 0)
                overlay.line(polygon + polygon[:1], fill=colour, width=1)
                quads = patch_quads(box_homography(np.asarray(chart.box)), sample) * scale
                statuses = list(chart.grey_status.values())
                for index, quad in enumerate(quads):
                    grey = index in ACHROMATIC_PATCHES
                    status = statuses[ACHROMATIC_PATCHES.index(index)] if grey and statuses else None
                    fill = _STATUS_COLOURS.get(status or "", (200, 200, 200))
                    overlay.polygon([tuple(p) for p in quad], outline=fill if grey else (120, 120, 120))
        tile.paste(image, offset)
    name = result.image if len(result.image) <= 44 else "..." + result.image[-41:]
    draw.text((4, panel + 2), name, fill=(235, 235, 235))
    if result.ok:
        camera = "" if result.camera_error is None else f", phone AWB off by {result.camera_error:.1f} deg"
        text, colour = f"{result.cct:.0f} K, Duv {result.duv:+.4f}{camera}", (150, 230, 150)
    else:
        text, colour = f"{result.code}: {result.reason}", (255, 110, 110)
    import textwrap

    for line, part in enumerate(textwrap.wrap(text, width=2 * panel // 6)[:2]):
        draw.text((4, panel + 15 + 13 * line), part, fill=colour)
    return tile


def write_contact_sheets(
    results: Sequence[Any], out: str | Path, columns: int = 3, rows: int = 8, *, sample: float
) -> list[Path]:
    """Write ``contact_sheet.png`` (``contact_sheet_02.png``, ... when there are more tiles than one page holds).

    Args:
        results: :class:`~moto_vision.data.curation.label_awb.LabelResult` objects with thumbnails.
        out: folder to write into.
        columns: tiles per row.
        rows: rows per page.
        sample: share of each patch side that was sampled (``LabelOptions.sample``), drawn as the patch outline.

    Returns:
        The PNG paths.
    """
    from PIL import Image

    out = Path(out)
    panel = max([max(r.thumbnails["as_shot"].shape[:2]) for r in results if r.thumbnails] or [192])
    per_page = columns * rows
    paths = []
    for page, start in enumerate(range(0, len(results), per_page), start=1):
        chunk = results[start : start + per_page]
        tiles = [_tile(result, panel, sample) for result in chunk]
        width, height = tiles[0].size
        n_rows = (len(tiles) + columns - 1) // columns
        sheet = Image.new("RGB", (columns * (width + 8) + 8, n_rows * (height + 8) + 8), (48, 48, 48))
        for index, tile in enumerate(tiles):
            row, col = divmod(index, columns)
            sheet.paste(tile, (8 + col * (width + 8), 8 + row * (height + 8)))
        path = out / ("contact_sheet.png" if page == 1 else f"contact_sheet_{page:02d}.png")
        sheet.save(path)
        paths.append(path)
    return paths
