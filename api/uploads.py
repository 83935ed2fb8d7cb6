"""Receiving an upload: the multipart body streamed to a temporary file, never held in memory.

The byte limit is enforced while reading (a declared ``Content-Length`` over it is refused before
any byte is read), so an oversized upload costs at most ``max_bytes`` of disk.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from api.errors import ApiError

FILE_FIELD = "file"
FORM_OVERHEAD = 64 * 1024  # headers and boundaries around the file in a multipart body
MAX_FIELD_BYTES = 4096
MAX_FIELDS = 16


@dataclass
class ReceivedUpload:
    path: Path
    filename: str
    size: int
    fields: dict[str, str] = field(default_factory=dict)


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413,
        f"the upload is larger than the limit of {max_bytes:,} bytes (MAX_UPLOAD_BYTES)",
        param=FILE_FIELD,
    )


class _Receiver:
    """Callbacks of python-multipart's streaming parser: the file part goes to ``out``."""

    def __init__(self, out: IO[bytes], max_bytes: int) -> None:
        self.out, self.max_bytes = out, max_bytes
        self.size = 0
        self.filename: str | None = None
        self.fields: dict[str, str] = {}
        self._header_name, self._header_value = b"", b""
        self._disposition = b""
        self._name: str | None = None
        self._is_file = False
        self._value = bytearray()
        self._parts = 0

    def on_part_begin(self) -> None:
        self._disposition, self._name, self._is_file = b"", None, False
        self._value = bytearray()
        self._parts += 1
        if self._parts > MAX_FIELDS:
            raise ApiError(422, f"too many form fields (at most {MAX_FIELDS})")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise ApiError(400, "a multipart part has no name in its Content-Disposition")
        self._name = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options:
            if self._name != FILE_FIELD:
                raise ApiError(
                    422, f"send the file in the form field '{FILE_FIELD}'", param=self._name
                )
            if self.filename is not None:
                raise ApiError(422, "send exactly one file per upload", param=FILE_FIELD)
            self.filename = options[b"filename"].decode("utf-8", "replace")
            self._is_file = True

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.size += end - start
            if self.size > self.max_bytes:
                raise _too_large(self.max_bytes)
            self.out.write(data[start:end])
        else:
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                raise ApiError(
                    422, f"form field too long (at most {MAX_FIELD_BYTES} bytes)", param=self._name
                )

    def on_part_end(self) -> None:
        if not self._is_file and self._name is not None:
            try:
                self.fields[self._name] = self._value.decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(
                    422, f"form field '{self._name}' is not valid UTF-8", param=self._name
                ) from None


@contextlib.asynccontextmanager
async def received_upload(request: Request, *, max_bytes: int) -> AsyncIterator[ReceivedUpload]:
    """Stream the request's multipart ``file`` field to a temporary file (deleted afterwards)."""
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise ApiError(
            415,
            f"send the dataset as multipart/form-data with the file in the field '{FILE_FIELD}'",
            param="Content-Type",
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + FORM_OVERHEAD:
        raise _too_large(max_bytes)
    fd, name = tempfile.mkstemp(prefix="ganforge-upload-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            receiver = _Receiver(out, max_bytes)
            parser = MultipartParser(
                options[b"boundary"],
                {
                    "on_part_begin": receiver.on_part_begin,
                    "on_header_field": receiver.on_header_field,
                    "on_header_value": receiver.on_header_value,
                    "on_header_end": receiver.on_header_end,
                    "on_headers_finished": receiver.on_headers_finished,
                    "on_part_data": receiver.on_part_data,
                    "on_part_end": receiver.on_part_end,
                },
            )
            try:
                async for chunk in request.stream():
                    parser.write(chunk)
                parser.finalize()
            except MultipartParseError as error:
                raise ApiError(400, f"malformed multipart body: {error}") from None
            except ClientDisconnect:
                raise ApiError(400, "the upload was interrupted") from None
        if receiver.filename is None:
            raise ApiError(422, f"no file in the form field '{FILE_FIELD}'", param=FILE_FIELD)
        yield ReceivedUpload(path, receiver.filename, receiver.size, receiver.fields)
    finally:
        path.unlink(missing_ok=True)


def multipart_body(file_description: str, **fields: dict[str, Any]) -> dict[str, Any]:
    """The ``openapi_extra`` of a route that reads its upload with ``received_upload``: a required
    ``file`` described by ``file_description`` and the optional form ``fields`` (JSON Schemas)."""
    properties = {"file": {"type": "string", "format": "binary",
                           "description": file_description}, **fields}  # fmt: skip
    schema = {"type": "object", "required": ["file"], "properties": properties}
    return {"requestBody": {"required": True,
                            "content": {"multipart/form-data": {"schema": schema}}}}  # fmt: skip
