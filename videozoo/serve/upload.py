"""A multipart upload streamed to one temporary file, its size checked while it arrives.

FastAPI's own ``UploadFile`` stores the whole body before a handler runs; here the body is parsed
as it streams in (python-multipart's push parser), the ``video`` part goes straight to a file in
the server's private temporary folder, and an upload larger than the limit is refused as soon as
it crosses the limit — the rest of it is read and discarded (so the client sees the answer), never
stored. The file is removed when the request ends, whatever its outcome.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from videozoo.serve.errors import ApiError

FIELD_BYTES = 64 * 1024  # the largest text field accepted
MAX_PARTS = 16
# After the limit is crossed, up to this much more is read (and dropped) so that the client, still
# sending, receives the 413; beyond it the connection is closed.
DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 10.0

_SAFE_EXT = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


@dataclass
class Upload:
    """What one request sent: its text fields, and the video part stored at ``path``."""

    fields: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    filename: str = "upload"
    size: int = 0


def client_filename(raw: str | None) -> str:
    """The base name a client gave its file, as the results and messages name it."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:200].strip()
    return name or "upload"


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"


class _Receiver:
    """Push-parser callbacks: headers of each part, the text fields, the file part's bytes."""

    def __init__(self, folder: Path, file_field: str, max_bytes: int):
        self.folder, self.file_field, self.max_bytes = folder, file_field, max_bytes
        self.upload = Upload()
        self.created: Path | None = None
        self.pending: list[bytes] = []  # file bytes parsed but not yet written (written off the loop)
        self.too_large = False
        self.finished = False
        self.parts = 0
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._is_file = False
        self._buffer = bytearray()
        self._file = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._hfield,
            "on_header_value": self._hvalue,
            "on_header_end": self._hend,
            "on_headers_finished": self._headers_done,
            "on_part_data": self._data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise ApiError(400, "bad_request", f"too many form fields (at most {MAX_PARTS})")
        self._headers, self._header_field, self._header_value = {}, b"", b""
        self._name, self._is_file, self._buffer = None, False, bytearray()

    def _hfield(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _hvalue(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _hend(self) -> None:
        self._headers[self._header_field.strip().lower()] = self._header_value.strip()
        self._header_field, self._header_value = b"", b""

    def _headers_done(self) -> None:
        disposition, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name")
        if disposition != b"form-data" or name is None:
            raise ApiError(400, "bad_request", "a multipart part has no form-data name")
        self._name = name.decode("utf-8", "replace")
        if self._name != self.file_field:
            return
        if self.upload.path is not None:
            raise ApiError(400, "bad_request", f"send one `{self.file_field}` file per request")
        self._is_file = True
        self.upload.filename = client_filename(params.get(b"filename", b"").decode("utf-8", "replace"))
        ext = os.path.splitext(self.upload.filename)[1]
        # The decoder probes the content; a plausible extension only helps it with raw streams.
        path = self.folder / f"upload-{secrets.token_hex(8)}{ext if _SAFE_EXT.match(ext) else ''}"
        self._file = open(path, "xb")
        self.created = self.upload.path = path

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.upload.size += end - start
            if self.upload.size > self.max_bytes:
                self.too_large = True
            elif not self.too_large:
                self.pending.append(data[start:end])
            return
        self._buffer += data[start:end]
        if len(self._buffer) > FIELD_BYTES:
            raise ApiError(400, "bad_request", f"form field {self._name!r} is longer than {FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if not self._is_file and self._name is not None:
            try:
                self.upload.fields[self._name] = self._buffer.decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(400, "bad_request", f"form field {self._name!r} is not UTF-8 text") from None

    def _end(self) -> None:
        self.finished = True

    def flush(self) -> None:
        """Write the parsed file bytes (runs in a worker thread)."""
        if self._file is not None and self.pending:
            data, self.pending = b"".join(self.pending), []
            self._file.write(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@contextlib.asynccontextmanager
async def received_upload(
    request: Request, folder: Path, *, max_bytes: int, file_field: str = "video"
) -> AsyncIterator[Upload]:
    """Receive a multipart body into ``folder``; the stored file is removed on leaving the block."""
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or not params.get(b"boundary"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the video as multipart/form-data with a `{file_field}` file field (curl -F {file_field}=@clip.mp4)",
        )
    too_large = ApiError(
        413,
        "upload_too_large",
        f"the upload is larger than this server's limit of {_mib(max_bytes)}",
        headers={"Connection": "close"},
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes + DRAIN_BYTES:
        raise too_large  # not worth reading at all

    receiver = _Receiver(folder, file_field, max_bytes)
    parser = MultipartParser(params[b"boundary"], receiver.callbacks())
    try:
        await _read_body(request, parser, receiver)
        if receiver.too_large:
            raise too_large
        if not receiver.finished:
            raise ApiError(400, "incomplete_upload", "the multipart body ended before its closing boundary")
        await run_in_threadpool(receiver.close)  # flushed and closed before anyone reads it
        yield receiver.upload
    finally:
        receiver.close()
        if receiver.created is not None:
            receiver.created.unlink(missing_ok=True)


async def _read_body(request: Request, parser: MultipartParser, receiver: _Receiver) -> None:
    overflow_at: float | None = None
    dropped = 0
    try:
        async for chunk in request.stream():
            if overflow_at is not None:  # past the limit: read and drop, within a bound
                dropped += len(chunk)
                if dropped > DRAIN_BYTES or time.monotonic() - overflow_at > DRAIN_SECONDS:
                    return
                continue
            try:
                parser.write(chunk)
            except MultipartParseError as e:
                raise ApiError(400, "bad_multipart", f"the multipart body is malformed: {e}") from None
            if receiver.too_large:
                overflow_at = time.monotonic()
                receiver.pending.clear()
                receiver.close()
                if receiver.created is not None:
                    receiver.created.unlink(missing_ok=True)
                continue
            if receiver.pending:
                await run_in_threadpool(receiver.flush)
    except ClientDisconnect:
        raise ApiError(400, "incomplete_upload", "the client closed the connection before the upload ended") from None
    if receiver.pending:
        await run_in_threadpool(receiver.flush)
