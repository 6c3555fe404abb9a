"""One index of a dataset on disk, shared by the datamodules and the data tools.

Every real dataset format is read in two steps:

1. an *indexer* parses the folder layout and ground-truth files (without decoding images) into a list of
   :class:`SampleRecord`; it raises only when the dataset as a whole cannot be read, and keeps the record of a
   sample with a problem (a missing mask, a listed file that does not exist, a NaN illuminant) as found;
2. a ``Dataset`` decodes records into tensors; the datamodules first check every record
   (:mod:`moto_vision.data.validation`).

The datamodules and ``moto-vision data check|report|split`` use the same indexers (registered with
:func:`register_format`), so the tools check exactly what training will read.

Split manifests (written by ``moto-vision data split``) are folders holding ``train.txt``, ``val.txt`` and
``test.txt``: one image path per line, relative to the dataset root.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moto_vision.heads.base import TaskName

__all__ = [
    "SPLITS",
    "SampleRecord",
    "apply_split_manifest",
    "format_names",
    "get_indexer",
    "read_split_manifest",
    "register_format",
    "write_split_manifest",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class SampleRecord:
    """One sample of a dataset as found on disk.

    Attributes:
        image: path of the image file.
        split: ``"train"``, ``"val"``, ``"test"``, or ``None`` when the format has no official split.
        mask: path of the mask / matte / label image (segmentation), or a list of per-part mask files.
        labels: class names (scene: one or more; segmentation: unused).
        illuminant: ground-truth illuminant RGB (AWB), as given by the dataset (not yet normalised).
        group: capture group (session, subject, scene id) that must never straddle two splits.
        extra: format-specific facts (black level, saturation, masked regions, camera, fold, ...).
        problems: ``(check code, message)`` pairs of what the indexer found wrong with this sample (a label outside
            the categories, ...). Indexers keep a bad sample's record rather than raise, so that ``data check``
            reports every problem in one run and training refuses them all at once
            (:mod:`moto_vision.data.validation`).
    """

    image: Path
    split: str | None = None
    mask: Path | list[Path] | None = None
    labels: list[str] | None = None
    illuminant: tuple[float, float, float] | None = None
    group: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)


Indexer = Callable[..., list[SampleRecord]]
_REGISTRY: dict[tuple[str, str], Indexer] = {}


def register_format(task: TaskName, name: str) -> Callable[[Indexer], Indexer]:
    """Decorator registering ``indexer(root: Path, **options) -> list[SampleRecord]`` for a task's format."""

    def decorator(indexer: Indexer) -> Indexer:
        _REGISTRY[(task, name)] = indexer
        return indexer

    return decorator


def get_indexer(task: TaskName, name: str) -> Indexer:
    """The registered indexer of ``task``'s format ``name`` (raises with the known formats otherwise)."""
    _import_task_formats(task)
    try:
        return _REGISTRY[(task, name)]
    except KeyError:
        raise ValueError(f"Unknown {task} dataset format {name!r}; known formats: {format_names(task)}.") from None


def format_names(task: TaskName) -> list[str]:
    """Names of the on-disk formats registered for ``task``."""
    _import_task_formats(task)
    return sorted(name for (t, name) in _REGISTRY if t == task)


def _import_task_formats(task: str) -> None:
    # Formats register themselves when their module is imported; importing the data package imports them all.
    import moto_vision.data  # noqa: F401


def read_split_manifest(manifest_dir: str | Path) -> dict[str, set[str]]:
    """Read ``train.txt`` / ``val.txt`` / ``test.txt`` (image paths relative to the dataset root)."""
    manifest_dir = Path(manifest_dir)
    if not manifest_dir.is_dir():
        raise FileNotFoundError(
            f"Split manifest folder not found: {manifest_dir} (write one with `moto-vision data split`)."
        )
    splits: dict[str, set[str]] = {}
    for split in SPLITS:
        path = manifest_dir / f"{split}.txt"
        if path.is_file():
            lines = (line.strip() for line in path.read_text().splitlines())
            splits[split] = {Path(line).as_posix() for line in lines if line and not line.startswith("#")}
    if not splits:
        raise FileNotFoundError(f"{manifest_dir} holds none of {[f'{s}.txt' for s in SPLITS]}.")
    return splits


def apply_split_manifest(
    records: Iterable[SampleRecord], root: str | Path, manifest_dir: str | Path
) -> list[SampleRecord]:
    """Set each record's split from a manifest; records the manifest does not list are dropped."""
    root = Path(root)
    splits = read_split_manifest(manifest_dir)
    result = []
    for record in records:
        key = _relative(record.image, root)
        for split, members in splits.items():
            if key in members:
                record.split = split
                result.append(record)
                break
    return result


def write_split_manifest(assignment: dict[str, Sequence[SampleRecord]], root: str | Path, out_dir: str | Path) -> Path:
    """Write ``{split}.txt`` files listing each split's image paths relative to ``root``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, records in assignment.items():
        lines = sorted(_relative(r.image, Path(root)) for r in records)
        (out_dir / f"{split}.txt").write_text("".join(f"{line}\n" for line in lines))
    return out_dir


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()
