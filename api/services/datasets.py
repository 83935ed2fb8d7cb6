"""Datasets: uploaded packs (rows + one object each) and the builtin catalogue."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.config import ApiSettings
from api.schemas import BuiltinDatasetOut, DatasetOut, LabelsIn, LabelsPatch
from api.services import dataset_files
from api.services.tenancy import get_owned, list_owned, relabel_from
from api.services.usage import check_quota
from gan_engine.data.idx import CLASS_NAMES
from gan_engine.data.mixtures import MIXTURES
from gan_engine.data.packs import write_pack
from gan_engine.spec import BUILTIN_IMAGE_SIDES
from store.db import session_scope
from store.errors import Conflict, InvalidRequest, NotFound
from store.models import UNFINISHED_STATUSES, Dataset, Job, new_id, utcnow
from store.storage import ObjectStorage, dataset_pack_key

log = logging.getLogger("api.datasets")

MAX_NAME_CHARS = 200


def _mixture(name: str, layout: str) -> BuiltinDatasetOut:
    classes = [f"mode{k}" for k in range(len(MIXTURES[name].modes))]
    return BuiltinDatasetOut(
        name=name,
        kind="points",
        sample_shape=[2],
        n_images=50_000,
        class_names=classes,
        num_classes=len(classes),
        description=f"2-D points: {layout} (PacGAN protocol); labels are the mode index",
    )


def _images(name: str, count: int, classes: list[str], what: str) -> BuiltinDatasetOut:
    side = BUILTIN_IMAGE_SIDES[name]
    return BuiltinDatasetOut(
        name=name,
        kind="image",
        sample_shape=[side, side, 1],
        n_images=count,
        class_names=classes,
        num_classes=len(classes),
        description=what,
    )


def _paired(
    name: str, source: BuiltinDatasetOut, channels: int, what: str, count: int | None = None
) -> BuiltinDatasetOut:
    side = BUILTIN_IMAGE_SIDES[name]
    return BuiltinDatasetOut(
        name=name,
        kind="paired",
        sample_shape=[side, side, channels],
        input_shape=[side, side, channels],
        n_images=source.n_images if count is None else count,
        class_names=source.class_names,
        num_classes=source.num_classes,
        description=f"paired, for task 'translation': {what}",
    )


_PHOTOS = BuiltinDatasetOut(
    name="photos", kind="image", sample_shape=[64, 64, 3], n_images=360, class_names=[],
    num_classes=0, description="64×64 crops of scikit-learn's two sample photographs",
)  # fmt: skip
BUILTINS: tuple[BuiltinDatasetOut, ...] = (
    _mixture("ring8", "8 Gaussians on the unit circle, std 0.01"),
    _mixture("grid25", "25 Gaussians at {-4,-2,0,2,4}², std 0.05"),
    _images(
        "digits",
        1438,
        [str(k) for k in range(10)],
        "scikit-learn's 8×8 handwritten digits (80% train split)",
    ),
    _images("mnist", 60_000, CLASS_NAMES["mnist"], "MNIST handwritten digits"),
    _images(
        "fashion-mnist", 60_000, CLASS_NAMES["fashion-mnist"], "Fashion-MNIST clothing articles"
    ),
)
BUILTINS += (
    _paired("edges2fashion", BUILTINS[-1], 1, "an edge map of each Fashion-MNIST image -> it"),
    _paired("superres-x4-fashion", BUILTINS[-1], 1,
            "each Fashion-MNIST image downsampled 4× (and upsampled bicubically) -> it"),
    _paired("superres-x4-mnist", BUILTINS[-2], 1,
            "each MNIST image downsampled 4× (and upsampled bicubically) -> it"),
    _paired("superres-x4-photos", _PHOTOS, 3,
            "64×64 crops of scikit-learn's two photographs downsampled 4× -> the crops"),
)  # fmt: skip


BUILTINS_BY_NAME: dict[str, BuiltinDatasetOut] = {builtin.name: builtin for builtin in BUILTINS}


def get_dataset(session: Session, *, tenant_id: str, dataset_id: str) -> Dataset:
    return get_owned(session, Dataset, object_id=dataset_id, tenant_id=tenant_id)


def list_datasets(
    session: Session, *, tenant_id: str, after: str | None, limit: int, tags: list[str] = ()
) -> tuple[list[Dataset], bool]:
    return list_owned(session, Dataset, tenant_id=tenant_id, after=after, limit=limit, tags=tags)


def upload_labels(fields: dict[str, str]) -> LabelsIn:
    """Tags and metadata sent as form fields beside the file: ``tags`` comma-separated (a tag
    holds no comma), ``metadata`` a JSON object of strings."""
    given: dict[str, Any] = {}
    if fields.get("tags", "").strip():
        given["tags"] = [tag.strip() for tag in fields["tags"].split(",")]
    if "metadata" in fields:
        try:
            given["metadata"] = json.loads(fields["metadata"])
        except ValueError:
            raise InvalidRequest(
                'metadata: send a JSON object of strings, e.g. {"source": "scan-2"}',
                param="metadata",
            ) from None
    try:
        return LabelsIn.model_validate(given)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"])
        raise InvalidRequest(f"{param}: {first['msg']}", param=param) from None


def relabel_dataset(
    patch: LabelsPatch, session: Session, *, tenant_id: str, dataset_id: str
) -> Dataset:
    """``PATCH``: as for jobs and models, except that a dataset always has a name."""
    if "name" in patch.model_fields_set and patch.name is None:
        raise InvalidRequest("a dataset always has a name; send a new one", param="name")
    return relabel_from(patch, session, Dataset, object_id=dataset_id, tenant_id=tenant_id)


def dataset_name(name: str | None, filename: str) -> str:
    """The name given (printable, at most MAX_NAME_CHARS), else the file name's printable stem."""
    name = (name or "").strip()
    if not name:
        stem = "".join(char for char in Path(filename).stem if char.isprintable())
        return stem[:MAX_NAME_CHARS].strip() or "dataset"
    if len(name) > MAX_NAME_CHARS:
        raise InvalidRequest(f"name: at most {MAX_NAME_CHARS} characters", param="name")
    if not name.isprintable():
        raise InvalidRequest(
            f"name: printable text only; {name[:40]!r} holds a control or unprintable character",
            param="name",
        )
    return name


def create_dataset(
    *,
    sessions: sessionmaker[Session],
    storage: ObjectStorage,
    settings: ApiSettings,
    tenant_id: str,
    path: Path,
    filename: str,
    name: str | None,
    labels: LabelsIn | None = None,
) -> Dataset:
    """Validate an uploaded file, store it as a pack and record the dataset (blocking: run it in
    a worker thread). Nothing is stored before the answer it will be returned in is built."""
    name = dataset_name(name, filename)
    dataset_files.check_file_type(path, filename)
    with session_scope(sessions) as session:
        check_quota(session, tenant_id=tenant_id, quota_bytes=settings.max_storage_bytes_per_tenant)
    dataset_id = new_id("ds")
    key = dataset_pack_key(dataset_id)
    with tempfile.TemporaryDirectory(prefix="ganforge-pack-") as folder:
        pack = Path(folder) / "pack.npz"
        n_images, image_shape, class_names, class_counts, input_shape = _write_pack(
            path, settings, pack
        )
        row = Dataset(
            id=dataset_id,
            tenant_id=tenant_id,
            name=name,
            storage_key=key,
            n_images=n_images,
            image_shape=image_shape,
            class_names=class_names,
            class_counts=class_counts,
            input_shape=input_shape,
            size_bytes=pack.stat().st_size,
            tags=list(labels.tags) if labels else [],
            metadata_=dict(labels.metadata) if labels else {},
            created_at=utcnow(),
        )
        try:
            DatasetOut.model_validate(row).model_dump_json()
        except ValueError:  # validation or serialisation: a value JSON cannot carry
            raise InvalidRequest(
                "the dataset's class names cannot be returned as JSON text",
                code="invalid_dataset",
                param=dataset_files.FILE,
            ) from None
        storage.put_file(key, pack)
    try:
        with session_scope(sessions) as session:
            session.add(row)
    except BaseException:
        storage.delete(key)
        raise
    return row


def _write_pack(
    path: Path, settings: ApiSettings, pack: Path
) -> tuple[int, list[int], list[str] | None, list[int] | None, list[int] | None]:
    """Decode the upload and write it to ``pack``: its decoded arrays live only in this call.
    Returns the image count, [H, W, C], the class names, the images per class and (paired data)
    the inputs' [H, W, C]."""
    with dataset_files.converted(path, settings) as converted:
        write_pack(
            pack,
            converted.images,
            converted.labels,
            converted.class_names,
            inputs=converted.inputs,
        )
        count = len(converted.images)
        names, labels = converted.class_names, converted.labels
        counts = (
            None
            if names is None or labels is None
            else np.bincount(labels, minlength=len(names)).tolist()
        )
        return (
            count,
            _hwc(converted.images),
            names,
            counts,
            (None if converted.inputs is None else _hwc(converted.inputs)),
        )


def _hwc(images: np.ndarray) -> list[int]:
    """[H, W, C] of a stack of images (N, H, W) or (N, H, W, C)."""
    _, height, width, *channels = images.shape
    return [height, width, channels[0] if channels else 1]


def delete_dataset(
    session: Session, *, storage: ObjectStorage, tenant_id: str, dataset_id: str
) -> None:
    """Delete a dataset and its pack; refused while a queued or running job trains on it."""
    row = session.scalar(
        select(Dataset)
        .where(Dataset.id == dataset_id, Dataset.tenant_id == tenant_id)
        .with_for_update()  # a job submitted meanwhile waits for this (see jobs.submit_job)
    )
    if row is None:
        raise NotFound(f"dataset {dataset_id} not found")
    active = session.scalars(
        select(Job.id)
        .where(Job.dataset_id == dataset_id, Job.status.in_(UNFINISHED_STATUSES))
        .limit(3)
    ).all()
    if active:
        raise Conflict(
            f"dataset {dataset_id} is used by unfinished job(s) {', '.join(active)} (queued, "
            "running or paused); cancel them or wait for them to finish"
        )
    key = row.storage_key
    session.delete(row)
    session.commit()
    try:
        storage.delete(key)
    except Exception:  # the row is gone; a leftover object is only wasted space
        log.warning(
            "dataset %s deleted but its pack %s could not be removed",
            dataset_id,
            key,
            exc_info=True,
        )
