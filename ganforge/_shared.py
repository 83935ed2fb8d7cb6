"""What the sync and the async client share: request bodies, uploads, answers."""

from __future__ import annotations

import io
import json
import tempfile
import uuid
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ganforge._http import Upload
from ganforge.errors import APIError
from ganforge.types import StreamMessage

if TYPE_CHECKING:
    import numpy as np

PAGE_SIZE = 100  # the API's largest page
LONG_POLL_S = 30.0  # GET /v1/jobs/{id}?wait= (at most 60)
STREAM_RECONNECTS = 3
UPLOAD_SUFFIXES = (".npz", ".zip")

Spec = Mapping[str, Any] | str | Path


def load_spec(spec: Spec) -> dict[str, Any]:
    """A spec given as a dict, or the path of a YAML or JSON file holding one."""
    if isinstance(spec, Mapping):
        return dict(spec)
    path = Path(spec)
    try:
        text = path.read_text()
    except OSError as error:
        raise APIError(f"cannot read the spec {path}: {error}", code="invalid_spec") from error
    try:
        loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise APIError(f"{path} is not valid YAML/JSON: {error}", code="invalid_spec") from error
    if not isinstance(loaded, dict):
        raise APIError(f"{path} does not hold a mapping (a spec)", code="invalid_spec")
    return loaded


def new_idempotency_key() -> str:
    return f"ganforge-py-{uuid.uuid4().hex}"


def _zip_folder(folder: Path, out: Path) -> None:
    """Class folders of images, zipped as the API reads them (names relative to ``folder``)."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file() and not file.name.startswith("."):
                archive.write(file, file.relative_to(folder).as_posix())


@contextmanager
def dataset_upload(
    path: str | Path,
    name: str | None,
    tags: Sequence[str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Iterator[Upload]:
    """An .npz or .zip as it is; a folder (of class folders of images) zipped in a temp file.
    Tags and metadata go as form fields (comma-separated; JSON)."""
    source = Path(path).expanduser()
    fields = {"name": name} if name is not None else {}
    if tags:
        fields["tags"] = ",".join(tags)
    if metadata:
        fields["metadata"] = json.dumps(dict(metadata))
    if source.is_dir():
        with tempfile.TemporaryDirectory(prefix="ganforge-upload-") as scratch:
            archive = Path(scratch) / f"{source.resolve().name}.zip"
            _zip_folder(source, archive)
            yield Upload(archive, archive.name, fields)
        return
    if not source.is_file():
        raise APIError(f"no such file or folder: {source}", code="invalid_dataset", param="file")
    if source.suffix.lower() not in UPLOAD_SUFFIXES:
        raise APIError(
            f"{source.name}: upload an .npz, a .zip or a folder of class folders",
            code="invalid_dataset",
            param="file",
        )
    yield Upload(source, source.name, fields)


@contextmanager
def scores_upload(
    images: np.ndarray | str | Path,
    labels: Sequence[int] | np.ndarray | None,
    fields: Mapping[str, Any],
) -> Iterator[Upload]:
    """The images of ``POST /v1/models/{id}/scores``: an array (uint8 (N, H, W[, C]), with
    optional labels) sent as an .npz written to a temp file, or an .npz/.zip file as it is.
    Fields left None are not sent (the server's defaults apply)."""
    sent = {name: str(value) for name, value in fields.items() if value is not None}
    if isinstance(images, str | Path):
        source = Path(images).expanduser()
        if labels is not None:
            raise APIError("labels go inside the .npz (or as class folders of the .zip)",
                           code="invalid_scoring_request", param="labels")  # fmt: skip
        if not source.is_file() or source.suffix.lower() not in UPLOAD_SUFFIXES:
            raise APIError(f"{source}: give an array, an .npz or a .zip of images",
                           code="invalid_scoring_request", param="file")  # fmt: skip
        yield Upload(source, source.name, sent)
        return
    import numpy as np

    arrays = {"images": np.asarray(images)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels, dtype=np.int64)
    with tempfile.TemporaryDirectory(prefix="ganforge-scores-") as scratch:
        path = Path(scratch) / "images.npz"
        np.savez(path, **arrays)
        yield Upload(path, path.name, sent)


def score_fields(
    method: str,
    seed: int | None,
    steps: int | None,
    starts: int | None,
    distance: str | None,
    feature_weight: float | None,
) -> dict[str, Any]:
    return {"method": method, "seed": seed, "steps": steps, "starts": starts,
            "distance": distance, "feature_weight": feature_weight}  # fmt: skip


def sample_body(
    *,
    format: str,
    labels: Sequence[int] | None,
    class_names: Sequence[str] | None,
    per_class: int | None,
    n: int | None,
    seed: int | None,
    truncation: float | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "labels": list(labels) if labels is not None else None,
        "class_names": list(class_names) if class_names is not None else None,
        "per_class": per_class,
        "n": n,
        "seed": seed,
        "truncation": truncation,
    }
    return {key: value for key, value in body.items() if value is not None} | {"format": format}


TRANSLATE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")


@contextmanager
def translation_upload(inputs: str | Path | np.ndarray, fmt: str) -> Iterator[Upload]:
    """A PNG/JPEG/.npy file as it is, or an array of uint8 images saved as a temporary .npy."""
    fields = {"format": fmt}
    if isinstance(inputs, str | Path):
        source = Path(inputs).expanduser()
        if not source.is_file() or source.suffix.lower() not in TRANSLATE_SUFFIXES:
            raise APIError(
                f"{source}: translate a .png, .jpg or .npy file, or pass a uint8 array",
                code="invalid_translation_input",
                param="file",
            )
        yield Upload(source, source.name, fields)
        return
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="ganforge-translate-") as scratch:
        path = Path(scratch) / "inputs.npy"
        np.save(path, np.ascontiguousarray(inputs), allow_pickle=False)
        yield Upload(path, path.name, fields)


def interpolation_body(
    *,
    format: str,
    from_seed: int,
    to_seed: int | None,
    from_class: int | str | None,
    to_class: int | str | None,
    frames: int,
    truncation: float | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "from_seed": from_seed,
        "to_seed": to_seed,
        "from_class": from_class,
        "to_class": to_class,
        "frames": frames,
        "truncation": truncation,
    }
    return {key: value for key, value in body.items() if value is not None} | {"format": format}


def synthetic_dataset_body(
    *,
    per_class: int,
    seed: int,
    truncation: float | None,
    name: str | None,
    tags: Sequence[str] | None,
    metadata: Mapping[str, str] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "per_class": per_class,
        "seed": seed,
        "truncation": truncation,
        "name": name,
        "tags": list(tags) if tags is not None else None,
        "metadata": dict(metadata) if metadata is not None else None,
    }
    return {key: value for key, value in body.items() if value is not None}


def read_npy(content: bytes) -> np.ndarray:
    import numpy as np

    return np.load(io.BytesIO(content), allow_pickle=False)


def save_export(content: bytes, path: str | Path) -> Path:
    """A model's export zip: written as it is to a ``.zip`` path, else unzipped into the folder
    ``path`` (created), which ``python -m gan_engine sample`` reads."""
    target = Path(path).expanduser()
    if target.suffix.lower() == ".zip":
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        return target
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        archive.extractall(target)
    return target


def stream_message(event: str, data: str, id: str | None) -> StreamMessage:
    from ganforge.types import Event, Progress

    parsed: Any = json.loads(data) if data else None
    if event == "event" and isinstance(parsed, dict):
        parsed = Event.model_validate(parsed)
    elif event == "progress" and isinstance(parsed, dict):
        parsed = Progress.model_validate(parsed)
    return StreamMessage(event=event, data=parsed, id=id or None)


def is_final(message: StreamMessage) -> bool:
    from ganforge.types import FINISHED_STATUSES

    return (
        message.event == "status"
        and isinstance(message.data, dict)
        and message.data.get("status") in (*FINISHED_STATUSES, "deleted")
    )


def merge_series(into: dict[str, list[tuple[int, float | None]]], page: Mapping[str, Any]) -> None:
    for name, points in page.items():
        into.setdefault(name, []).extend((int(step), value) for step, value in points)


def tags_param(tag: str | Sequence[str] | None) -> list[str]:
    if tag is None:
        return []
    return [tag] if isinstance(tag, str) else list(tag)


def labels_patch(
    name: str | object | None, tags: Sequence[str] | None, metadata: Mapping[str, Any] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if name is not UNSET:
        body["name"] = name
    if tags is not None:
        body["tags"] = list(tags)
    if metadata is not None:
        body["metadata"] = dict(metadata)
    return body


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # `update(name=None)` clears the name; leaving it out keeps it


def webhook_body(url: str, events: Sequence[str] | None, secret: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if events is not None:
        body["events"] = list(events)
    if secret is not None:
        body["secret"] = secret
    return body
