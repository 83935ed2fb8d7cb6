"""``POST /v1/models/{id}/translate``: input images (PNG/JPEG, or an .npy batch) through a
translation model, answered in the formats of sampling.

What a user sends is checked before it is decoded: the type by its magic bytes, an image's size
from its header, an ``.npy`` array's dtype, shape and size from its header against the bytes
that follow; nothing is unpickled.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import anyio
import numpy as np
from PIL import Image, ImageOps

from api.config import ApiSettings
from api.services.dataset_files import (
    GREY_MODES,
    IMAGE_FORMATS,
    JPEG_MAGIC,
    NPY_MAGIC,
    PNG_MAGIC,
)
from api.services.generation import Encoded, ForwardBatcher, ModelCache, encode_samples
from api.telemetry import ApiMetrics
from gan_engine.data.packs import HEADER_READERS
from store.errors import InvalidRequest, UnsupportedMediaType
from store.storage import ObjectStorage

FILE = "file"
FORMATS = ("png_grid", "png_zip", "npy", "json")


def _invalid(message: str, param: str = FILE) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_translation_input", param=param)


def read_inputs(path: Path, settings: ApiSettings) -> np.ndarray:
    """uint8 (N, H, W) or (N, H, W, C) images from an uploaded PNG, JPEG or ``.npy``."""
    with path.open("rb") as handle:
        head = handle.read(len(PNG_MAGIC))
        handle.seek(0)
        if head.startswith(NPY_MAGIC):
            return _npy_inputs(handle, path.stat().st_size, settings)
        if head.startswith((PNG_MAGIC, JPEG_MAGIC)):
            return _image_input(handle, settings)[None]
    raise UnsupportedMediaType(
        "send one PNG or JPEG image, or an .npy array of uint8 images (N×H×W or N×H×W×C)",
        param=FILE,
    )


def _image_input(handle: io.BufferedReader, settings: ApiSettings) -> np.ndarray:
    try:
        image = Image.open(handle, formats=IMAGE_FORMATS)
        if max(image.size) > settings.max_image_side:
            raise _invalid(
                f"the image is {image.height}×{image.width}; the longest side may be at most "
                f"{settings.max_image_side} pixels (MAX_IMAGE_SIDE)"
            )
        image.load()
        upright = ImageOps.exif_transpose(image)
    except InvalidRequest:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise _invalid(f"not a readable image ({error})") from None
    assert upright is not None
    return np.asarray(upright.convert("L" if upright.mode in GREY_MODES else "RGB"))


def _npy_inputs(handle: io.BufferedReader, size: int, settings: ApiSettings) -> np.ndarray:
    try:
        version = np.lib.format.read_magic(handle)
        reader = HEADER_READERS.get(version)
        if reader is None:
            raise _invalid(f"unsupported .npy format version {version[0]}.{version[1]}")
        shape, fortran, dtype = reader(handle)
    except (ValueError, EOFError) as error:
        raise _invalid(f"not a readable .npy array ({error})") from None
    if dtype != np.uint8 or fortran:
        raise _invalid(f"the array must be uint8 images (0..255) in C order, got {dtype}")
    batch = _as_batch(tuple(shape))
    count, height, width = batch[:3]
    if count > settings.max_generate_samples or max(height, width) > settings.max_image_side:
        raise _invalid(
            f"{count} images of {height}×{width}: at most {settings.max_generate_samples} "
            f"images (MAX_GENERATE_SAMPLES) of at most {settings.max_image_side} pixels a side"
        )
    if int(np.prod(shape)) != size - handle.tell():
        raise _invalid("the .npy array's header does not match its data: the file is damaged")
    handle.seek(0)
    array = np.lib.format.read_array(handle, allow_pickle=False)
    return array.reshape(batch)


def _as_batch(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(H, W) one grey image; (H, W, 1|3) one image; (N, H, W) grey or (N, H, W, C) a batch."""
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3:
        return (1, *shape) if shape[-1] in (1, 3) else shape
    if len(shape) == 4 and shape[-1] in (1, 3):
        return shape
    raise _invalid(f"expected images H×W[×C] or N×H×W[×C] with C 1 or 3, got shape {shape}")


async def translate(
    *,
    model_id: str,
    path: Path,
    fmt: str,
    settings: ApiSettings,
    storage: ObjectStorage,
    cache: ModelCache,
    batcher: ForwardBatcher,
    metrics: ApiMetrics,
) -> Encoded:
    """Translations of the uploaded inputs by a model the caller owns (checked by the route)."""
    started = time.perf_counter()
    if fmt not in FORMATS:
        raise _invalid(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}", "format")
    artifact = cache.peek(model_id) or await anyio.to_thread.run_sync(cache.get, model_id, storage)
    if not artifact.translates:
        raise InvalidRequest(
            f"model {model_id} generates from noise: use POST /v1/models/{model_id}/samples; "
            "translate needs a model trained with task 'translation'",
            code="not_a_translation_model",
            param="model",
        )
    images = await anyio.to_thread.run_sync(read_inputs, path, settings)
    samples = await batcher.on_torch(artifact.translate, images)
    encoded = await anyio.to_thread.run_sync(encode_samples, artifact, samples, fmt)
    metrics.generation.labels(fmt).observe(time.perf_counter() - started)
    return encoded
