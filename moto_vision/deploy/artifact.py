"""Files of an export: atomic writes, hashes and the metadata that travels with every artifact.

Every export directory holds the artifacts (``.pte``, ``.onnx``, ``.tflite``) and one ``metadata.json``:
the facts about the model (task, class names, thresholds, input size and colour domain, moto-vision
version, the checkpoint's hash) plus one entry per artifact (format, precision, size, hash, exporter,
quantization and parity results). Where the format allows it the same model facts are embedded in the
file itself: ONNX ``metadata_props`` (key ``moto_vision``) and an ExecuTorch constant method
``moto_vision_metadata`` returning the JSON string, so a file that travels alone still says what it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "EMBEDDED_METADATA_KEY",
    "METADATA_FILE",
    "atomic_output",
    "file_sha256",
    "read_metadata",
    "record_artifact",
    "write_json_atomic",
]

#: Name of the sidecar file in every export directory.
METADATA_FILE = "metadata.json"
#: ONNX ``metadata_props`` key / ExecuTorch constant-method name holding the model facts as JSON.
EMBEDDED_METADATA_KEY = "moto_vision"
PTE_METADATA_METHOD = "moto_vision_metadata"


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    A failed export (an exception anywhere in the block, or a process killed mid-write) therefore never
    leaves a partial artifact under the final name; the temporary file is removed on failure.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        if not temporary_path.is_file() or temporary_path.stat().st_size == 0:
            raise RuntimeError(f"Export wrote nothing to {path}.")
        # mkstemp creates owner-only files; artifacts are meant to be shared like any other output.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary_path, 0o666 & ~umask)
        os.replace(temporary_path, path)
    finally:
        temporary_path.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    path = Path(path)
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
    return path


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file (read in chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def foreign_checkpoint(directory: Path, model_facts: Mapping[str, Any]) -> str | None:
    """Checkpoint hash in ``directory/metadata.json`` when it differs from ``model_facts``'s, else ``None``."""
    sidecar = directory / METADATA_FILE
    if not sidecar.is_file():
        return None
    try:
        old = (json.loads(sidecar.read_text()).get("checkpoint") or {}).get("sha256")
    except (OSError, ValueError):
        return None
    new = (model_facts.get("checkpoint") or {}).get("sha256")
    return old if old and new and old != new else None


def record_artifact(
    artifact: Path, model_facts: Mapping[str, Any], entry: Mapping[str, Any], *, replace: bool = False
) -> Path:
    """Add or update ``artifact``'s entry in the ``metadata.json`` of its directory.

    Args:
        artifact: the exported file.
        model_facts: facts shared by every artifact of the model.
        entry: this artifact's own record.
        replace: start a new ``metadata.json`` when the existing one describes another checkpoint.

    Raises:
        FileExistsError: the directory's ``metadata.json`` describes a different checkpoint and ``replace`` is off;
            exporting a second model into the same directory would mix their metadata.
    """
    sidecar = artifact.parent / METADATA_FILE
    data: dict[str, Any] = {}
    other = foreign_checkpoint(artifact.parent, model_facts)
    if other and not replace:
        raise FileExistsError(
            f"{sidecar} describes another checkpoint (sha256 {other[:12]}...). Export each model into its own "
            "--output directory, or pass --overwrite to start a new metadata.json there."
        )
    if sidecar.is_file() and not other:
        data = json.loads(sidecar.read_text())
    artifacts = dict(data.get("artifacts", {}))
    artifacts[artifact.name] = dict(entry)
    write_json_atomic(sidecar, {**model_facts, "artifacts": artifacts})
    return sidecar


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Metadata of an artifact: model facts plus its own entry (``format``, ``precision``, ``parity``...).

    Reads the ``metadata.json`` beside the file; without one, falls back to the metadata embedded in the file
    (ONNX, ExecuTorch). Returns ``{}`` when neither exists.
    """
    path = Path(path)
    sidecar = path.parent / METADATA_FILE
    if sidecar.is_file():
        data = json.loads(sidecar.read_text())
        entry = data.pop("artifacts", {}).get(path.name)
        if entry is not None:
            return {**data, **entry}
    return read_embedded_metadata(path)


def read_embedded_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The model facts embedded in an ``.onnx`` or ``.pte`` file (``{}`` if there are none)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        for prop in model.metadata_props:
            if prop.key == EMBEDDED_METADATA_KEY:
                return json.loads(prop.value)
    elif suffix == ".pte":
        from executorch.runtime import Runtime

        program = Runtime.get().load_program(path)
        if PTE_METADATA_METHOD in program.method_names:
            method = program.load_method(PTE_METADATA_METHOD)
            return json.loads(method.execute([])[0])
    return {}


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Cannot write {type(value).__name__} to JSON metadata.")
