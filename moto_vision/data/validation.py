"""Checks of indexed samples shared by training and ``moto-vision data check``.

Indexers report what they find and raise only when the dataset as a whole cannot be read (no root, no ground-truth
file, an unparseable list); a problem of one sample (a missing mask, a listed image that does not exist, a NaN
illuminant, a label outside the categories) stays in its record, so that ``data check`` reports every one of them
in one run and training refuses them all in one message. Two levels of checks:

- :func:`record_problems`: the record's own facts (split, ground truth), no file access;
- :func:`file_problems`: the headers of its image and masks (exists, not empty, an image, mask size), no pixel
  decoding, so the datamodules can check every file of a large dataset before the first training step.

``data check`` adds what needs the pixels (truncation, bit depth, mask values, duplicates, leakage).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from moto_vision.data.errors import DataError
from moto_vision.data.images import ImageReadError, probe_image
from moto_vision.data.records import SPLITS, SampleRecord

__all__ = ["Problem", "check_records", "file_problems", "mask_size_problem", "record_problems"]

#: Lines of problems a refusal prints before "... and N more".
SHOWN = 10


@dataclass(frozen=True)
class Problem:
    """One problem of one sample: a ``data check`` code, the file it concerns, and what is wrong."""

    code: str
    path: str
    message: str


def record_problems(
    record: SampleRecord, task: str, *, needs_target: bool = True, classes: Sequence[str] | None = None
) -> list[Problem]:
    """Problems of a record's own facts (no file access): what its indexer noted, split, ground truth.

    Args:
        record: an indexed sample.
        task: ``"awb"``, ``"portrait"`` or ``"scene"``.
        needs_target: the format carries ground truth, so every record must have it.
        classes: the label vocabulary of a scene dataset (``None``: any label).
    """
    where = str(record.image)
    problems = [Problem(code, where, message) for code, message in record.problems]
    noted = {code for code, _ in record.problems}  # what the indexer said already is not said twice
    if record.split is not None and record.split not in SPLITS:
        problems.append(Problem("bad_split", where, f"split {record.split!r} is not one of {list(SPLITS)}"))
    if not needs_target:
        return problems
    if task == "awb":
        illuminant = record.illuminant
        if illuminant is None:
            problems.append(Problem("missing_illuminant", where, "no ground-truth illuminant for this image"))
        else:
            values = [float(v) for v in illuminant]
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                problems.append(Problem("illuminant_nonfinite", where, f"illuminant {values} is not 3 finite numbers"))
            elif min(values) <= 0:
                problems.append(Problem("illuminant_nonpositive", where, f"illuminant {values} has a component <= 0"))
    elif task == "portrait" and not record.mask and "missing_mask" not in noted:
        problems.append(Problem("missing_mask", where, "no mask for this image"))
    elif task == "scene" and not noted & {"unknown_label", "missing_label"}:
        if not record.labels:
            problems.append(Problem("missing_label", where, "no label for this image"))
        elif classes is not None:
            unknown = [label for label in record.labels if label not in set(classes)]
            if unknown:
                message = f"labels {unknown} are not among the {len(classes)} classes"
                problems.append(Problem("unknown_label", where, message))
    return problems


def mask_size_problem(
    image_size: tuple[int, int], mask_size: tuple[int, int], image_name: str, *, same_size: bool = True
) -> str | None:
    """Why a mask of ``mask_size`` cannot label an image of ``image_size`` (both ``(width, height)``), or ``None``.

    ``same_size=False`` accepts any mask of the image's aspect ratio (formats whose loader resizes the image to the
    mask, e.g. CelebAMask-HQ's 512 px masks of 1024 px images).
    """
    (iw, ih), (mw, mh) = image_size, mask_size
    if same_size:
        return None if (mw, mh) == (iw, ih) else f"mask is {mw}x{mh}, its image {image_name} is {iw}x{ih}"
    if abs(mw / mh - iw / ih) <= 0.01 * iw / ih:
        return None
    return f"mask is {mw}x{mh} (aspect {mw / mh:.3f}), its image {image_name} is {iw}x{ih} (aspect {iw / ih:.3f})"


def file_problems(record: SampleRecord, *, masks: bool = True, mask_same_size: bool = True) -> list[Problem]:
    """Problems found in the headers of a record's image and masks (no pixel decoding).

    Args:
        record: an indexed sample.
        masks: check its masks too (segmentation).
        mask_same_size: masks must have their image's size (else only its aspect ratio).
    """
    from moto_vision.data.raw import RawReadError, is_raw_file, read_raw_metadata

    problems = []
    size: tuple[int, int] | None = None
    try:
        if is_raw_file(record.image):  # camera raw (DNG): its own header reader; Pillow would misread it as TIFF
            read_raw_metadata(record.image)
        else:
            size = probe_image(record.image).oriented_size
    except ImageReadError as error:
        problems.append(Problem(error.code, str(record.image), error.reason))
    except RawReadError as error:
        problems.append(Problem(error.code, str(record.image), error.detail))
    if not masks or not record.mask:
        return problems
    for mask in record.mask if isinstance(record.mask, list) else [record.mask]:
        try:
            mask_size = probe_image(mask).oriented_size
        except ImageReadError as error:
            code = "missing_file" if error.code == "missing_file" else "mask_unreadable"
            problems.append(Problem(code, str(mask), f"mask: {error.reason}"))
            continue
        if size is not None:
            same = mask_same_size and not record.extra.get("resize_image_to_mask", False)
            why = mask_size_problem(size, mask_size, Path(record.image).name, same_size=same)
            if why:
                problems.append(Problem("mask_size", str(mask), why))
    return problems


def _relative(path: str, root: Path | None) -> str:
    if root is None:
        return path
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return path


def _progress(records: Sequence[SampleRecord], description: str) -> Iterable[SampleRecord]:
    from tqdm import tqdm

    return tqdm(records, desc=description, file=sys.stderr, leave=False, disable=len(records) < 500, unit="file")


def check_records(
    records: Sequence[SampleRecord],
    *,
    task: str,
    fmt: str,
    root: str | Path | None,
    owner: str,
    files: bool = True,
    masks: bool = False,
    needs_target: bool = True,
    classes: Sequence[str] | None = None,
    mask_same_size: bool = True,
    error: type[DataError] = DataError,
) -> None:
    """Check every record (facts, then file headers) and raise one :class:`DataError` listing all problems.

    Args:
        records: the samples a run will read.
        task: ``"awb"``, ``"portrait"`` or ``"scene"`` (the ``data check --task`` of the hint).
        fmt: the dataset format (for the hint).
        root: the dataset root (paths are shown relative to it).
        owner: who is checking (``"PortraitDataModule"``), named in the message.
        files: probe the image (and mask) headers.
        masks: check masks (segmentation).
        needs_target: every record must carry ground truth.
        classes: scene label vocabulary.
        mask_same_size: masks must have their image's size.
        error: the :class:`DataError` subclass to raise (the caller's own, e.g. ``PortraitDataError``).

    Raises:
        DataError: naming every broken sample (the first :data:`SHOWN`) and the ``data check`` command to run.
    """
    problems: list[Problem] = []
    broken = 0
    for record in _progress(records, f"{owner}: checking files") if files else records:
        found = record_problems(record, task, needs_target=needs_target, classes=classes)
        if files:
            found += file_problems(record, masks=masks, mask_same_size=mask_same_size)
        source = str(record.extra.get("source", ""))
        if re.search(r":\d+$", source):  # the list or manifest line the sample came from
            found = [Problem(p.code, p.path, f"{p.message} (listed at {source})") for p in found]
        broken += bool(found)
        problems += found
    if not problems:
        return
    where = f" of {root}" if root is not None else ""
    lines = [f"{owner}: {broken} of {len(records)} samples{where} (format {fmt!r}) cannot be used:"]
    lines += [f"  {_relative(p.path, Path(root) if root else None)}: {p.message} ({p.code})" for p in problems[:SHOWN]]
    if len(problems) > SHOWN:
        lines.append(f"  ... and {len(problems) - SHOWN} more")
    if root is not None:
        lines.append(
            "Fix or remove these files. Every problem, with the checks that need the pixels (truncated files, "
            f"duplicates, leakage between splits): moto-vision data check {root} --task {task} --format {fmt}"
        )
    raise error("\n".join(lines))
