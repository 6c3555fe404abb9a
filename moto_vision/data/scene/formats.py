"""Scene datasets on disk: indexers for the real formats and the ``Dataset`` that decodes them.

Formats (registered with :func:`~moto_vision.data.records.register_format` under the task ``"scene"``):

``image_folder``
    One folder per class (torchvision's ``ImageFolder`` layout), optionally inside ``train/``, ``val/``
    and ``test/`` folders that then set the split::

        root/snow/0001.jpg                 root/train/snow/0001.jpg
        root/night/street.png       or     root/val/snow/0107.jpg
                                           root/test/night/0033.jpg

``manifest``
    A CSV file (header row with a path column ``path|image|file|filename`` and a label column
    ``labels|label|scenes|scene|tags``; several labels in one cell separated by ``;`` or ``|``; optional
    ``split`` column) or JSON lines (``{"path": "a.jpg", "labels": ["portrait", "night"], "split": "train"}``,
    ``"label": "snow"`` also accepted). Paths are relative to the manifest's folder. ``root`` is the manifest
    file itself or a folder holding ``manifest.csv`` / ``manifest.jsonl``.

``places365``
    The official Places365-Standard lists: ``categories_places365.txt`` (``/a/airfield 0``),
    ``places365_train_standard.txt`` (``/a/airfield/00000001.jpg 0``) and ``places365_val.txt``
    (``Places365_val_00000001.jpg 165``), with the images in ``data_256/`` (or ``data_large/``) and
    ``val_256/`` (or ``val_large/``). The official validation list is the test split, as in the
    literature (the test labels are not public); the datamodule carves its validation split from train.

Every record carries its class names in ``labels`` and, where the format orders classes itself
(Places365), the class index in ``extra["class_index"]``; ``extra["source"]`` names the file and line the
record came from, so errors can point at it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from moto_vision.data import images
from moto_vision.data.errors import DataError
from moto_vision.data.records import SampleRecord, register_format

__all__ = [
    "IMAGE_EXTENSIONS",
    "SceneDataError",
    "SceneImages",
    "class_names_of",
    "index_image_folder",
    "index_manifest",
    "index_places365",
    "list_images",
    "load_image",
]

IMAGE_EXTENSIONS: tuple[str, ...] = images.IMAGE_SUFFIXES
_SPLIT_FOLDERS = ("train", "val", "test")
_PATH_COLUMNS = ("path", "image", "file", "filename")
_LABEL_COLUMNS = ("labels", "label", "scenes", "scene", "tags")
_LABEL_SEPARATORS = (";", "|")


class SceneDataError(DataError):
    """Bad scene data: the message names the file (and line) and what to fix."""


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, hidden files skipped), sorted."""
    return images.list_image_files(folder)


def _require_dir(root: Path, fmt: str) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SceneDataError(f"Scene dataset folder not found: {root} (--data.root, format {fmt!r}).")
    return root


# --------------------------------------------------------------------------------------- image_folder
@register_format("scene", "image_folder")
def index_image_folder(root: Path) -> list[SampleRecord]:
    """Index ``root/<class>/<images>`` or ``root/{train,val,test}/<class>/<images>``.

    Raises:
        SceneDataError: no class folders, or a class folder without images.
    """
    root = _require_dir(root, "image_folder")
    split_dirs = [root / split for split in _SPLIT_FOLDERS if (root / split).is_dir()]
    records: list[SampleRecord] = []
    if split_dirs:
        for split_dir in split_dirs:
            records += _index_class_folders(split_dir, split=split_dir.name)
    else:
        records = _index_class_folders(root, split=None)
    return records


def _index_class_folders(folder: Path, split: str | None) -> list[SampleRecord]:
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise SceneDataError(
            f"{folder} holds no class folders. The image_folder format expects one folder per class "
            f"({folder}/<class name>/<images>), optionally inside train/, val/ and test/."
        )
    records = []
    for class_dir in class_dirs:
        images = list_images(class_dir)
        if not images:
            raise SceneDataError(
                f"Class folder {class_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}). Add images or remove "
                "the folder."
            )
        records += [
            SampleRecord(image=path, split=split, labels=[class_dir.name], extra={"source": str(class_dir)})
            for path in images
        ]
    return records


# --------------------------------------------------------------------------------------- manifest
@register_format("scene", "manifest")
def index_manifest(root: Path, manifest: str | None = None) -> list[SampleRecord]:
    """Index a CSV or JSON-lines manifest of image paths and one or more labels per image.

    Args:
        root: the manifest file, or the folder holding it.
        manifest: file name inside ``root`` when ``root`` is a folder (default: ``manifest.csv``,
            ``manifest.jsonl`` or ``manifest.json``, whichever exists).

    Raises:
        SceneDataError: missing manifest, missing columns or a malformed line (naming the manifest file and line).
            A listed image that does not exist, or a bad split, stays in its record for the checks
            (:mod:`moto_vision.data.validation`).
    """
    path = _find_manifest(Path(root).expanduser(), manifest)
    base = path.parent
    if path.suffix.lower() in {".jsonl", ".json", ".ndjson"}:
        rows = _read_jsonl(path)
    else:
        rows = _read_csv(path)
    records = []
    for line, image, labels, split in rows:
        # A listed image that does not exist or a split that is not train/val/test is that sample's problem: the
        # record is kept as listed, and the checks name it with its line (``extra["source"]``).
        image_path = Path(image).expanduser()
        image_path = image_path if image_path.is_absolute() else base / image_path
        records.append(SampleRecord(image=image_path, split=split, labels=labels, extra={"source": f"{path}:{line}"}))
    if not records:
        raise SceneDataError(f"Manifest {path} lists no images.")
    return records


def _find_manifest(root: Path, manifest: str | None) -> Path:
    if root.is_file():
        return root
    if not root.is_dir():
        raise SceneDataError(f"Scene manifest not found: {root} (--data.root, format 'manifest').")
    names = [manifest] if manifest else ["manifest.csv", "manifest.jsonl", "manifest.json"]
    for name in names:
        if (root / name).is_file():
            return root / name
    raise SceneDataError(
        f"No manifest in {root}: looked for {names}. Pass the manifest file as --data.root, or its name as "
        "--data.manifest."
    )


def _split_labels(cell: str) -> list[str]:
    for separator in _LABEL_SEPARATORS:
        cell = cell.replace(separator, "\n")
    return [label.strip() for label in cell.splitlines() if label.strip()]


def _read_csv(path: Path) -> list[tuple[int, str, list[str], str | None]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = [name.strip().lower() for name in (reader.fieldnames or [])]
        path_column = next((c for c in _PATH_COLUMNS if c in fields), None)
        label_column = next((c for c in _LABEL_COLUMNS if c in fields), None)
        if path_column is None or label_column is None:
            raise SceneDataError(
                f"{path}: the header {fields} needs a path column ({'|'.join(_PATH_COLUMNS)}) and a label column "
                f"({'|'.join(_LABEL_COLUMNS)}); several labels go in one cell separated by ';'."
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
            if not row.get(path_column):
                raise SceneDataError(f"{path}:{line}: empty {path_column!r}.")
            rows.append((line, row[path_column], _split_labels(row.get(label_column, "")), row.get("split") or None))
    return rows


def _read_jsonl(path: Path) -> list[tuple[int, str, list[str], str | None]]:
    rows = []
    for line, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except json.JSONDecodeError as error:
            raise SceneDataError(f"{path}:{line}: not valid JSON ({error.msg}).") from None
        if not isinstance(item, dict):
            raise SceneDataError(f"{path}:{line}: expected a JSON object per line, got {type(item).__name__}.")
        image = next((item[c] for c in _PATH_COLUMNS if c in item), None)
        if not isinstance(image, str) or not image:
            raise SceneDataError(f"{path}:{line}: needs a path field ({'|'.join(_PATH_COLUMNS)}).")
        labels: Any = next((item[c] for c in _LABEL_COLUMNS if c in item), None)
        if labels is None:
            raise SceneDataError(f"{path}:{line}: needs a labels field ({'|'.join(_LABEL_COLUMNS)}).")
        if isinstance(labels, str):
            labels = _split_labels(labels)
        elif not (isinstance(labels, list) and all(isinstance(label, str) for label in labels)):
            raise SceneDataError(f"{path}:{line}: labels must be a string or a list of strings, got {labels!r}.")
        rows.append((line, image, [label.strip() for label in labels if label.strip()], item.get("split")))
    return rows


# --------------------------------------------------------------------------------------- places365
@register_format("scene", "places365")
def index_places365(root: Path, train_list: str = "places365_train_standard.txt") -> list[SampleRecord]:
    """Index Places365 from its official file lists (train as ``train``, the official val list as ``test``).

    Args:
        root: folder with the lists and the image folders.
        train_list: training list (``places365_train_standard.txt`` or ``places365_train_challenge.txt``).

    Raises:
        SceneDataError: a missing list or image folder, or a malformed line. A class index outside the
            categories is that sample's ``unknown_label`` problem (:mod:`moto_vision.data.validation`).
    """
    root = _require_dir(root, "places365")
    categories_file = root / "categories_places365.txt"
    categories = _read_places_categories(categories_file)
    records = []
    for list_name, folders, split in (
        (train_list, ("data_256", "data_large"), "train"),
        ("places365_val.txt", ("val_256", "val_large"), "test"),
    ):
        list_file = root / list_name
        if not list_file.is_file():
            raise SceneDataError(f"Places365 list {list_file} not found (download the official file lists).")
        image_dir = next((root / f for f in folders if (root / f).is_dir()), None)
        if image_dir is None:
            raise SceneDataError(
                f"Places365 images for {list_name} not found: expected one of {[str(root / f) for f in folders]}."
            )
        for line, text in enumerate(list_file.read_text().splitlines(), start=1):
            if not text.strip():
                continue
            parts = text.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise SceneDataError(f"{list_file}:{line}: expected '<image path> <class index>', got {text!r}.")
            index = int(parts[1])
            problems = []
            if index >= len(categories):  # that sample's problem, kept for the checks
                message = f"class index {index} is outside the {len(categories)} categories of {categories_file}"
                problems.append(("unknown_label", message))
            records.append(
                SampleRecord(
                    image=image_dir / parts[0].lstrip("/"),
                    split=split,
                    labels=[categories[index]] if not problems else [],
                    extra={"source": f"{list_file}:{line}", **({"class_index": index} if not problems else {})},
                    problems=problems,
                )
            )
    return records


def _read_places_categories(path: Path) -> list[str]:
    if not path.is_file():
        raise SceneDataError(f"Places365 category list {path} not found (it comes with the official file lists).")
    names: dict[int, str] = {}
    for line, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        parts = text.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise SceneDataError(f"{path}:{line}: expected '/<letter>/<category> <index>', got {text!r}.")
        # "/a/apartment_building/outdoor" -> "apartment_building/outdoor": drop the alphabetical bucket.
        names[int(parts[1])] = parts[0].strip("/").split("/", 1)[-1]
    if sorted(names) != list(range(len(names))):
        raise SceneDataError(f"{path}: category indices must run 0..{len(names) - 1} without gaps.")
    return [names[i] for i in range(len(names))]


# --------------------------------------------------------------------------------------- classes and decoding
def class_names_of(records: Sequence[SampleRecord]) -> list[str]:
    """The classes of indexed records: in the format's own order when it has one, alphabetical otherwise."""
    indexed = {label: r.extra["class_index"] for r in records if "class_index" in r.extra for label in r.labels or []}
    names = sorted({label for record in records for label in record.labels or []})
    if indexed and len(indexed) == len(names):
        return sorted(names, key=lambda name: indexed[name])
    return names


class SceneImages(Dataset):
    """Decode indexed scene images to ``{"image", "label", "path"}`` samples of a fixed size.

    Images are resized so the shorter side is ``image_size`` and centre-cropped to a square, so batches
    stack; random crops and flips happen later, on the device.

    Args:
        records: indexed samples.
        class_names: label order; every record label must be one of them.
        image_size: output height and width.
        multi_label: multi-hot float labels (``True``) or a class index (``False``, one label per record).
        with_labels: ``False`` for unlabelled images (prediction): no ``"label"`` key.
    """

    def __init__(
        self,
        records: Sequence[SampleRecord],
        class_names: Sequence[str],
        image_size: int,
        *,
        multi_label: bool = False,
        with_labels: bool = True,
    ) -> None:
        self.records = list(records)
        self.class_names = list(class_names)
        self.index = {name: i for i, name in enumerate(self.class_names)}
        self.image_size = image_size
        self.multi_label = multi_label
        self.with_labels = with_labels
        if with_labels:
            self.check_labels()

    def check_labels(self) -> None:
        """Raise one :class:`SceneDataError` naming every record with an unknown, missing or extra label."""
        problems = []
        for record in self.records:
            where = record.extra.get("source", record.image)
            labels = record.labels or []
            unknown = [label for label in labels if label not in self.index]
            if unknown:
                problems.append(f"{where}: image {record.image} has unknown label(s) {unknown}")
            elif not self.multi_label and len(labels) != 1:
                problems.append(f"{where}: image {record.image} has {len(labels)} labels {labels}")
        if not problems:
            return
        shown = self.class_names if len(self.class_names) <= 40 else [*self.class_names[:40], "..."]
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise SceneDataError(
            f"{len(problems)} of {len(self.records)} images have labels this model cannot learn:\n  "
            + "\n  ".join(problems[:10])
            + more
            + f"\nKnown classes: {shown}. Fix the labels, or add the classes to --data.classes and --model.class_names"
            + ("." if self.multi_label else "; multi-class training needs exactly one label per image (use "
               "--data.multi_label true and --model.multi_label true for multi-label data).")
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.records)

    def label_indices(self, i: int) -> list[int]:
        """Class indices of sample ``i`` without decoding its image."""
        return [self.index[label] for label in self.records[i].labels or []]

    def __getitem__(self, i: int) -> dict[str, Any]:
        record = self.records[i]
        sample: dict[str, Any] = {"image": load_image(record.image, self.image_size), "path": str(record.image)}
        if self.with_labels:
            indices = self.label_indices(i)
            if self.multi_label:
                label = torch.zeros(len(self.class_names))
                label[indices] = 1.0
                sample["label"] = label
            else:
                sample["label"] = torch.tensor(indices[0])
        return sample


def load_image(path: Path, size: int) -> torch.Tensor:
    """Read an image as ``(3, size, size)`` float sRGB in ``[0, 1]``, upright (shorter side resized, centre crop).

    Decoding is :func:`moto_vision.data.images.decode_image` (every Pillow mode, 16-bit, alpha, EXIF orientation,
    HEIC); JPEGs are decoded at the smallest scale that keeps ``size`` pixels.

    Raises:
        SceneDataError: the file is missing, truncated or not an image.
    """
    from torchvision.transforms.v2 import functional as TF

    try:
        tensor = images.read_image(path, reduce_to=size)
    except images.ImageReadError as error:
        raise SceneDataError(
            f"Cannot read image {error}. Replace or remove the file (`moto-vision data check` lists every "
            "unreadable file of a dataset)."
        ) from None
    tensor = TF.resize(tensor, size, antialias=True)
    return TF.center_crop(tensor, [size, size]).clamp_(0.0, 1.0)
