"""``moto-vision data check``: index a dataset with its registered indexer, then validate every sample.

:func:`scan_dataset` is the one pass over the data that ``check``, ``report`` and ``split`` share: it runs
the format's indexer (the same one the datamodule uses), checks each record's ground truth, decodes and
measures every sample in a process pool (:mod:`.scan`), and then runs the dataset-wide checks: exact and
near-duplicate images, the same image in two splits, one capture group in two splits. Every problem becomes an
:class:`Issue`; nothing is raised for bad data and nothing on disk is modified.
"""

from __future__ import annotations

import os
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moto_vision.data.curation.phash import near_duplicate_pairs
from moto_vision.data.curation.rules import FormatRules, rules_for
from moto_vision.data.curation.scan import HIST_BINS, SampleStats, ScanJob, run_scan
from moto_vision.data.records import SampleRecord, apply_split_manifest, get_indexer
from moto_vision.data.validation import record_problems

__all__ = ["CHECKS", "DatasetScan", "GroupRule", "Issue", "resolve_groups", "scan_dataset"]

#: Every check: code -> (severity, what it means). ``bit_depth`` and ``mode`` are errors where the loader cannot
#: use such an image (raw AWB formats) and warnings where it converts it.
CHECKS: dict[str, tuple[str, str]] = {
    "index_failed": ("error", "the format's indexer could not parse the folder or its ground truth, or found nothing"),
    "missing_file": ("error", "an image or mask the index lists does not exist"),
    "unreadable": ("error", "the file is not an image Pillow can open (wrong extension, empty, unsupported)"),
    "truncated": ("error", "the header opens but the pixel data does not decode (truncated or corrupt)"),
    "bit_depth": ("error|warning", "bits per channel differ from the format's (e.g. 8-bit file in a 16-bit raw set)"),
    "mode": ("error|warning", "channel count differs from the format's (grayscale, RGBA, CMYK ...)"),
    "exif_orientation": (
        "error|warning",
        "EXIF orientation other than 1: an error where the loader ignores it (viewers rotate, training does not), "
        "a warning where it applies it",
    ),
    "too_small": ("warning", "the image's short side is below the minimum size"),
    "missing_mask": ("error", "a segmentation sample has no mask"),
    "mask_unreadable": ("error", "the mask does not decode"),
    "mask_mode": ("error", "the mask has several channels (a colour-coded mask instead of class ids)"),
    "mask_size": ("error", "the mask's size (or aspect ratio) differs from its image's"),
    "class_out_of_range": ("error", "a label mask holds class ids outside 0..num_classes-1 (and not the ignore index)"),
    "mask_values": ("warning", "a binary mask holds values other than 0/1/255"),
    "missing_label": ("error", "a classification sample has no label"),
    "unknown_label": ("error", "a label is not in the class list"),
    "missing_illuminant": ("error", "an AWB sample has no ground-truth illuminant"),
    "illuminant_nonfinite": ("error", "the illuminant has NaN or infinite components"),
    "illuminant_nonpositive": ("error", "the illuminant has zero or negative components"),
    "bad_split": ("error", "a record's split is not train/val/test"),
    "not_in_manifest": ("warning", "samples the --splits manifest does not list (they were left out)"),
    "duplicate": ("warning", "identical files (same SHA-256) within one split"),
    "near_duplicate": ("warning", "perceptually near-identical images (pHash distance <= threshold) within one split"),
    "leakage": ("error", "the same image (exact or perceptual hash) in two splits"),
    "group_leakage": ("error", "one capture group (session, subject, scene) in two splits"),
}


@dataclass
class Issue:
    """One problem found in a dataset.

    Attributes:
        severity: ``"error"`` or ``"warning"``.
        code: a key of :data:`CHECKS`.
        path: the file concerned, relative to the dataset root where possible.
        message: why it is a problem (and, where there is one, the fix).
        related: other files involved (the other copies of a duplicate).
    """

    severity: str
    code: str
    path: str
    message: str
    related: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GroupRule:
    """Where a sample's capture group comes from.

    Attributes:
        key: ``"group"`` for ``SampleRecord.group`` (the default) or a key of ``SampleRecord.extra``.
        regex: a regular expression searched in the image path relative to the root; the named group
            ``group``, else the first group, else the whole match is the group (overrides ``key``).
    """

    key: str = "group"
    regex: str | None = None

    def describe(self) -> str:
        return f"regex {self.regex!r} on the relative path" if self.regex else f"record field {self.key!r}"


@dataclass
class DatasetScan:
    """Everything one pass over a dataset found: records, per-sample measurements, issues.

    ``histogram`` is the sum over decoded images of their pixel-luma histograms (each a distribution over
    :data:`~.scan.HIST_BINS` bins); ``leaks`` counts duplicate clusters and groups that straddle splits.
    """

    root: Path
    task: str
    format: str
    rules: FormatRules
    records: list[SampleRecord]
    stats: list[SampleStats]
    issues: list[Issue]
    groups: list[str | None]
    near_threshold: int
    seconds: float = 0.0
    workers: int = 1
    leaks: dict[str, int] = field(default_factory=lambda: {"exact": 0, "near": 0, "group": 0})
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS))

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    def relpath(self, index: int) -> str:
        return _relative(self.records[index].image, self.root)

    def summary(self) -> dict[str, dict[str, int]]:
        """Issue counts per severity and code."""
        counts: dict[str, dict[str, int]] = {"error": defaultdict(int), "warning": defaultdict(int)}
        for issue in self.issues:
            counts[issue.severity][issue.code] += 1
        return {severity: dict(sorted(codes.items())) for severity, codes in counts.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "task": self.task,
            "format": self.format,
            "samples": len(self.records),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "summary": self.summary(),
            "seconds": round(self.seconds, 2),
            "workers": self.workers,
            "leaks": dict(self.leaks),
            "issues": [issue.to_dict() for issue in self.issues],
        }


def _relative(path: Path | str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def resolve_groups(records: Sequence[SampleRecord], root: Path, rule: GroupRule) -> list[str | None]:
    """Each record's capture group under ``rule`` (``None`` where it has none)."""
    if rule.regex is not None:
        pattern = re.compile(rule.regex)
        groups: list[str | None] = []
        for record in records:
            match = pattern.search(_relative(record.image, root))
            if match is None:
                groups.append(None)
            elif "group" in pattern.groupindex:
                groups.append(match.group("group"))
            else:
                groups.append(match.group(1) if pattern.groups else match.group(0))
        return groups
    if rule.key == "group":
        return [record.group for record in records]
    return [None if record.extra.get(rule.key) is None else str(record.extra[rule.key]) for record in records]


# ------------------------------------------------------------------------------------------ record checks
def _check_record(record: SampleRecord, rel: str, task: str, rules: FormatRules, issues: list[Issue]) -> None:
    """Ground-truth checks that need no pixels (the same ones training runs before its first step)."""
    classes = record.extra.get("classes") or rules.classes
    for problem in record_problems(record, task, needs_target=rules.needs_target, classes=classes):
        issues.append(Issue("error", problem.code, rel, problem.message))


#: ``SampleRecord.extra["mask_kind"]`` of the portrait indexers -> how the checks read the mask. ``auto`` (a person
#: mask or, with the datamodule's class names, class ids) follows the format rule / command line.
RECORD_MASK_KINDS = {"alpha": "matte", "ids": "labels", "parts": "parts"}


def _job(index: int, record: SampleRecord, rules: FormatRules) -> ScanJob:
    extra = record.extra
    masks: tuple[str, ...] = ()
    if record.mask is not None and rules.mask_kind != "none":
        masks = tuple(str(m) for m in (record.mask if isinstance(record.mask, list) else [record.mask]))
    mask_kind = RECORD_MASK_KINDS.get(str(extra.get("mask_kind")), rules.mask_kind)
    num_classes = extra.get("num_classes", rules.num_classes)
    return ScanJob(
        index=index,
        image=str(record.image),
        masks=masks,
        bit_depth=extra.get("bit_depth", rules.bit_depth),
        channels=rules.channels,
        strict_mode=rules.strict_mode,
        linear=rules.linear,
        black_level=float(extra.get("black_level", 0.0) or 0.0),
        saturation=None if extra.get("saturation") is None else float(extra["saturation"]),
        saturation_margin=None if extra.get("saturation_margin") is None else float(extra["saturation_margin"]),
        mask_kind=mask_kind,
        # Formats whose loader resizes the image to its mask only need the same aspect ratio.
        mask_same_size=rules.mask_same_size and not extra.get("resize_image_to_mask", False),
        num_classes=None if num_classes is None else int(num_classes),
        ignore_index=rules.ignore_index,
        min_size=rules.min_size,
        exif_applied=rules.exif_applied,
    )


# ----------------------------------------------------------------------------------------- dataset checks
class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def _clusters(n: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    union = _UnionFind(n)
    touched = set()
    for i, j in pairs:
        union.union(i, j)
        touched.update((i, j))
    members: dict[int, list[int]] = defaultdict(list)
    for i in sorted(touched):
        members[union.find(i)].append(i)
    return [m for m in members.values() if len(m) > 1]


def duplicate_clusters(stats: Sequence[SampleStats], near_threshold: int) -> tuple[list[list[int]], list[list[int]]]:
    """Clusters of identical files and clusters of perceptual near-duplicates (that are not identical files)."""
    by_hash: dict[str, list[int]] = defaultdict(list)
    for s in stats:
        if s.sha256 is not None:
            by_hash[s.sha256].append(s.index)
    exact = [sorted(m) for m in by_hash.values() if len(m) > 1]
    hashed = [s for s in stats if s.phash is not None]
    near: list[list[int]] = []
    if near_threshold >= 0 and len(hashed) > 1:
        hashes = np.array([s.phash for s in hashed], dtype=np.uint64)
        pairs = (
            (hashed[i].index, hashed[j].index)
            for i, j, _ in near_duplicate_pairs(hashes, near_threshold)
            if hashed[i].sha256 != hashed[j].sha256
        )
        near = _clusters(len(stats), pairs)
    return exact, near


def _duplicate_issues(scan: DatasetScan, exact: list[list[int]], near: list[list[int]]) -> list[Issue]:
    issues = []
    for kind, clusters in (("exact", exact), ("near", near)):
        for members in clusters:
            splits = {scan.records[i].split for i in members} - {None}
            listed = ", ".join(f"{scan.relpath(i)} ({scan.records[i].split or 'no split'})" for i in members)
            first, others = scan.relpath(members[0]), [scan.relpath(i) for i in members[1:]]
            what = "identical files" if kind == "exact" else f"near-identical images (pHash <= {scan.near_threshold})"
            if len(splits) > 1:
                scan.leaks[kind] += 1
                message = f"{kind}: {what} in splits {sorted(splits)}: {listed}"
                issues.append(Issue("error", "leakage", first, message, others))
            else:
                code = "duplicate" if kind == "exact" else "near_duplicate"
                issues.append(Issue("warning", code, first, f"{len(members)} {what}: {listed}", others))
    return issues


def _group_issues(scan: DatasetScan) -> list[Issue]:
    members: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for index, (record, group) in enumerate(zip(scan.records, scan.groups)):
        if group is not None and record.split is not None:
            members[group][record.split].append(index)
    issues = []
    for group, by_split in sorted(members.items()):
        if len(by_split) > 1:
            scan.leaks["group"] += 1
            parts = ", ".join(
                f"{split} ({len(idx)} files, e.g. {scan.relpath(idx[0])})" for split, idx in by_split.items()
            )
            first = next(iter(by_split.values()))[0]
            related = [scan.relpath(idx[0]) for idx in list(by_split.values())[1:]]
            issues.append(Issue("error", "group_leakage", scan.relpath(first), f"group {group!r} in {parts}", related))
    return issues


# ------------------------------------------------------------------------------------------------- entry
def index_dataset(root: str | Path, task: str, fmt: str, options: dict[str, Any] | None = None) -> list[SampleRecord]:
    """Run the registered indexer of ``task``'s format ``fmt`` on ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Dataset root {root} is not a folder.")
    indexer = get_indexer(task, fmt)  # type: ignore[arg-type]
    return list(indexer(root, **(options or {})))


def scan_dataset(
    root: str | Path,
    task: str,
    fmt: str,
    *,
    options: dict[str, Any] | None = None,
    splits: str | Path | None = None,
    rules: FormatRules | None = None,
    group: GroupRule | None = None,
    near_threshold: int = 6,
    workers: int | None = None,
    progress: bool = True,
    ignore: Sequence[str] = (),
    records: list[SampleRecord] | None = None,
) -> DatasetScan:
    """Index ``root`` with the format's indexer, check and measure every sample.

    Args:
        root: dataset folder.
        task: ``"awb"``, ``"portrait"`` or ``"scene"``.
        fmt: a format registered for the task (``moto_vision.data.records.format_names(task)``).
        options: keyword options for the indexer.
        splits: a split-manifest folder that replaces the format's own splits (samples it omits are dropped).
        rules: what valid files look like (default: :func:`rules_for` the task and format).
        group: where capture groups come from (for the group-leakage check).
        near_threshold: largest pHash Hamming distance (of 64 bits) reported as a near-duplicate; ``-1`` skips.
        workers: worker processes (default: all CPU cores).
        progress: show a progress bar on stderr.
        ignore: check codes to leave out of the issues.
        records: already-indexed records (skips the indexer).

    Returns:
        The scan; indexing failures become an ``index_failed`` issue rather than an exception.
    """
    start = time.perf_counter()
    root = Path(root)
    rules = rules or rules_for(task, fmt)
    group = group or GroupRule()
    workers = max(1, workers or os.cpu_count() or 1)
    issues: list[Issue] = []
    if records is None:
        if not root.is_dir():
            raise FileNotFoundError(f"Dataset root {root} is not a folder.")
        indexer = get_indexer(task, fmt)  # type: ignore[arg-type]  # an unknown format is a usage error: raise
        try:
            records = list(indexer(root, **(options or {})))
        except Exception as error:  # noqa: BLE001 - whatever the indexer trips on is a finding about the data
            issues.append(Issue("error", "index_failed", str(root), f"{type(error).__name__}: {error}"))
            records = []
        else:
            if not records:
                issues.append(Issue("error", "index_failed", str(root), f"the {fmt} indexer found no samples here"))
    if splits is not None:
        before = len(records)
        records = apply_split_manifest(records, root, splits)
        if len(records) < before:
            issues.append(
                Issue(
                    "warning", "not_in_manifest", str(splits), f"{before - len(records)} indexed samples are not listed"
                )
            )
    for record in records:
        _check_record(record, _relative(record.image, root), task, rules, issues)
    jobs = (_job(i, record, rules) for i, record in enumerate(records))
    histogram = np.zeros(HIST_BINS)
    stats = []
    from moto_vision.data.raw import is_raw_file

    raw = any(is_raw_file(r.image) for r in records)
    for s in run_scan(jobs, len(records), workers=min(workers, max(1, len(records))), progress=progress, spawn=raw):
        if s.histogram is not None:  # summed here so that per-sample memory stays a few numbers
            histogram += s.histogram
            s.histogram = None
        stats.append(s)
    for s in stats:
        for severity, code, path, message in s.problems:
            issues.append(Issue(severity, code, _relative(path, root), message))
    scan = DatasetScan(
        root=root,
        task=task,
        format=fmt,
        rules=rules,
        records=records,
        stats=stats,
        issues=issues,
        groups=resolve_groups(records, root, group),
        near_threshold=near_threshold,
        workers=workers,
        histogram=histogram,
    )
    exact, near = duplicate_clusters(stats, near_threshold)
    scan.issues.extend(_duplicate_issues(scan, exact, near))
    scan.issues.extend(_group_issues(scan))
    ignored = set(ignore)
    scan.issues = sorted(
        (i for i in scan.issues if i.code not in ignored), key=lambda i: (i.severity != "error", i.code, i.path)
    )
    scan.seconds = time.perf_counter() - start
    return scan
