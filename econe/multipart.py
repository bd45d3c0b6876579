"""multipart/form-data for the front: text fields in memory, the `file` part streamed to disk.

Used for econe's non-AWS `UploadImage` (econe.md §6.1): signed text fields, then the image as
the `file` part. The file is only written after `authorize(fields_so_far)` accepted the text
fields that precede it, so an unauthenticated client cannot fill the upload directory. Text
fields are capped at `field_limit` bytes in total, the file at `file_limit`. Disk writes run
in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from econe.errors import Ec2Error

FILE_FIELD = "file"


@dataclass
class Upload:
    path: str
    filename: str
    size: int = 0

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)


@dataclass
class MultipartResult:
    fields: dict[str, str] = field(default_factory=dict)
    upload: Upload | None = None


def boundary_of(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise Ec2Error("InvalidRequest", "The multipart/form-data request has no boundary.")
    return boundary


async def read_multipart(
    receive: Any,
    content_type: str,
    *,
    tmpdir: str,
    field_limit: int,
    file_limit: int,
    authorize: Callable[[dict[str, str]], Awaitable[Any]],
) -> MultipartResult:
    """Parse the request body; on any failure the stored file is removed."""
    events: list[tuple[str, Any]] = []
    callbacks = {
        "on_part_begin": lambda: events.append(("begin", None)),
        "on_header_field": lambda d, s, e: events.append(("hfield", d[s:e])),
        "on_header_value": lambda d, s, e: events.append(("hvalue", d[s:e])),
        "on_header_end": lambda: events.append(("hend", None)),
        "on_headers_finished": lambda: events.append(("headers", None)),
        "on_part_data": lambda d, s, e: events.append(("data", bytes(d[s:e]))),
        "on_part_end": lambda: events.append(("end", None)),
    }
    parser = MultipartParser(boundary_of(content_type), callbacks)  # type: ignore[arg-type]
    result = MultipartResult()
    state = _PartState()
    loop = asyncio.get_running_loop()
    handle = None
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Ec2Error("RequestTimeout", "The client closed the connection.")
            try:
                parser.write(message.get("body", b""))
            except MultipartParseError as exc:
                raise Ec2Error(
                    "InvalidRequest", "The multipart/form-data body is malformed."
                ) from exc
            for kind, value in events:
                handle = await state.apply(
                    kind, value, result, handle, loop, tmpdir, field_limit, file_limit, authorize
                )
            events.clear()
            if not message.get("more_body", False):
                break
        parser.finalize()
    except BaseException:
        if handle is not None:
            handle.close()
        if result.upload is not None:
            result.upload.discard()
        raise
    if handle is not None:
        await loop.run_in_executor(None, handle.close)
    return result


@dataclass
class _PartState:
    header_name: bytes = b""
    header_value: bytes = b""
    name: str = ""
    filename: str | None = None
    buffer: bytearray = field(default_factory=bytearray)
    field_bytes: int = 0
    in_file: bool = False

    async def apply(
        self, kind, value, result, handle, loop, tmpdir, field_limit, file_limit, authorize
    ):
        if kind == "begin":
            self.name, self.filename, self.in_file = "", None, False
            self.buffer.clear()
            self.header_name = self.header_value = b""
        elif kind == "hfield":
            self.header_name += value
        elif kind == "hvalue":
            self.header_value += value
        elif kind == "hend":
            if self.header_name.lower() == b"content-disposition":
                _, options = parse_options_header(self.header_value)
                self.name = options.get(b"name", b"").decode("utf-8", "replace")
                raw_filename = options.get(b"filename")
                self.filename = (
                    None if raw_filename is None else raw_filename.decode("utf-8", "replace")
                )
            self.header_name = self.header_value = b""
        elif kind == "headers":
            if self.filename is not None:
                if self.name != FILE_FIELD or result.upload is not None:
                    raise Ec2Error(
                        "InvalidParameterValue",
                        f"Only one file part, named {FILE_FIELD}, is accepted.",
                    )
                await authorize(dict(result.fields))
                os.makedirs(tmpdir, exist_ok=True)
                fd, path = tempfile.mkstemp(prefix="econe-upload-", dir=tmpdir)
                handle = os.fdopen(fd, "wb")
                result.upload = Upload(path=path, filename=self.filename)
                self.in_file = True
        elif kind == "data":
            if self.in_file:
                upload = result.upload
                upload.size += len(value)
                if upload.size > file_limit:
                    raise Ec2Error(
                        "RequestEntityTooLarge", f"The file exceeds {file_limit} bytes.", status=413
                    )
                await loop.run_in_executor(None, handle.write, value)
            else:
                self.field_bytes += len(value)
                if self.field_bytes > field_limit:
                    raise Ec2Error(
                        "RequestEntityTooLarge",
                        f"The form fields exceed {field_limit} bytes.",
                        status=413,
                    )
                self.buffer += value
        elif kind == "end":
            if not self.in_file and self.name:
                try:
                    result.fields[self.name] = self.buffer.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise Ec2Error(
                        "InvalidParameterValue", f"The field {self.name} is not valid UTF-8."
                    ) from exc
            self.in_file = False
        return handle
