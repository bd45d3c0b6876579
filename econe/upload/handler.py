"""UploadImage: the Ruby econe's non-AWS action, served at the ASGI level so the file streams.

The EC2 Query front hands over every `POST` whose Content-Type is `multipart/form-data`
(`is_upload_request(scope)`) before reading any of its body, and `handle_upload` answers it
completely (one response, EC2 XML either way). The body is read incrementally:

1. text fields (Action, Version, AWSAccessKeyId, SignatureVersion, SignatureMethod, Timestamp,
   Signature, optional Name and Checksum), each capped at MAX_FIELD_BYTES; they must come
   before the `file` part, as the econe tools send them;
2. at the start of the `file` part the request is authenticated with those fields (SigV2 over
   all text fields except Signature; `file` is not a field) — nothing is written before that;
3. the file streams into `:tmpdir:` (SHA-256 on the way, `:upload_max_size:` enforced as it
   arrives), if the user and the server have an upload slot free (`:upload_max_per_user:`,
   `:upload_max_concurrent:`) and the disk room for it (`:upload_min_free:`), at
   `:upload_min_rate:` or faster; a client disconnect or any error removes the temp file, no
   image is created;
4. `one.image.allocate(<NAME, TYPE=OS, PATH, EC2_UPLOAD_SHA256>, :datastore_id:)` as the user,
   or the user's existing image with the same name and content (retry-safe);
5. `RegisterImageResponse` with `imageId` ami-%08d; the janitor removes the temp file once
   OpenNebula has copied it (image READY/ERROR/gone) or after COPY_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from typing import Any

from econe.config import Config
from econe.context import Principal, RawRequest
from econe.errors import Ec2Error, error_xml, missing_parameter
from econe.mapping.ids import format_id
from econe.upload import images
from econe.upload.multipart import (
    MultipartError,
    MultipartParser,
    PartEnd,
    PartStart,
    boundary_from_content_type,
)
from econe.upload.store import Slot, TempUpload, UploadJanitor
from econe.upload.wire import (
    ACTION,
    DEFAULT_VERSION,
    MAX_FIELD_BYTES,
    MAX_FIELDS,
    PRE_FILE_LIMIT,
    SHA256_HEX,
    VERSION_RE,
    ClientGone,
    UploadOutcome,
    bad_body,
    check_name,
    request_headers,
    response_xml,
    send_xml,
    too_large,
)

log = logging.getLogger("econe.upload")


class _Upload:
    """One UploadImage request, from the first body byte to the allocated image."""

    def __init__(self, scope, receive, config, authenticator, one, sessions, janitor, outcome):
        self.scope = scope
        self.receive = receive
        self.config: Config = config
        self.authenticator = authenticator
        self.one = one
        self.sessions = sessions
        self.janitor: UploadJanitor = janitor
        self.outcome: UploadOutcome = outcome
        self.headers: dict[str, str] = {}  # read in run(): a refusal is answered as any other
        self.received = 0
        self.body_done = False
        self.temp: TempUpload | None = None
        self.temp_taken = False  # the temp file belongs to the janitor / a late allocation
        self.principal: Principal | None = None
        self.version = DEFAULT_VERSION
        self.limit = config.upload_max_size + PRE_FILE_LIMIT
        self.slot: Slot | None = None  # held from the file's start to the answer
        self.window: tuple[float, int] | None = None  # (time, bytes received) of the rate

    # -- the body

    async def chunks(self):
        """The body's chunks. Each must come within :body_timeout: of the one before, and until
        the request is authenticated (the fields before the file) the whole of it within
        :body_timeout: too: a client cannot hold a connection by sending nothing, or by
        dripping the unauthenticated part."""
        wait = self.config.body_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not self.body_done:
            limit = wait if self.principal is not None else max(0.0, deadline - loop.time())
            try:
                async with asyncio.timeout(limit):
                    message = await self.receive()
            except TimeoutError:
                raise Ec2Error(
                    "RequestTimeout", f"The request body stalled for more than {wait:g} s."
                ) from None
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            self.body_done = not message.get("more_body", False)
            self.received += len(chunk)
            if self.received > self.limit:
                raise too_large(self.config.upload_max_size)
            if self.window is not None:
                self.check_rate(loop.time())
            if chunk:
                yield chunk

    def check_rate(self, now: float) -> None:
        """At least :upload_min_rate: bytes a second over each :body_timeout: of the file: a
        client dripping bytes just inside the per-chunk timeout cannot hold its slot and its
        disk space for ever."""
        assert self.window is not None
        rate, period = self.config.upload_min_rate, self.config.body_timeout
        since, base = self.window
        if not rate or now - since < period:
            return
        if self.received - base < rate * (now - since):
            raise Ec2Error(
                "RequestTimeout",
                f"The upload is slower than the server's minimum of {rate} bytes per second.",
            )
        self.window = (now, self.received)

    def declared_length(self) -> int | None:
        value = self.headers.get("content-length")
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise Ec2Error("InvalidRequest", "The Content-Length header is malformed.") from None

    async def run(self) -> int:
        self.headers = request_headers(self.scope)
        try:
            boundary = boundary_from_content_type(self.headers.get("content-type"))
        except MultipartError as exc:
            raise bad_body(str(exc)) from None
        declared = self.declared_length()
        if declared is not None and declared > self.limit:
            raise too_large(self.config.upload_max_size)
        parser = MultipartParser(boundary)
        fields: dict[str, str] = {}
        field: tuple[str, bytearray] | None = None
        in_file = file_done = False
        try:
            async for chunk in self.chunks():
                for event in parser.feed(chunk):
                    if isinstance(event, bytes):
                        if in_file:
                            assert self.temp is not None
                            if self.temp.too_large(len(event)):
                                raise too_large(self.config.upload_max_size)
                            await self.temp.write(event)
                        else:
                            assert field is not None
                            if len(field[1]) + len(event) > MAX_FIELD_BYTES:
                                raise Ec2Error(
                                    "InvalidParameterValue",
                                    f"The form field {field[0][:64]} exceeds "
                                    f"{MAX_FIELD_BYTES} bytes.",
                                )
                            field[1].extend(event)
                    elif isinstance(event, PartStart):
                        if file_done:
                            raise bad_body("the file part must be the last part")
                        if event.name == "file":
                            await self.start_file(fields)
                            in_file = True
                        else:
                            field = self.start_field(event, fields)
                    elif isinstance(event, PartEnd):
                        if in_file:
                            in_file, file_done = False, True
                        else:
                            assert field is not None
                            fields[field[0]] = self.decode(field)
                            field = None
                if self.temp is None and self.received > PRE_FILE_LIMIT:
                    raise bad_body(f"more than {PRE_FILE_LIMIT} bytes before the file part")
            parser.finish()
        except MultipartError as exc:
            raise bad_body(str(exc)) from None
        if self.temp is None:
            await self.authenticate(fields)  # a stranger learns nothing about the body
            raise missing_parameter("file")
        return await self.register(fields)

    @staticmethod
    def start_field(event: PartStart, fields: dict[str, str]) -> tuple[str, bytearray]:
        if not event.name:
            raise bad_body("a part has no name")
        if event.filename is not None:
            raise Ec2Error(
                "InvalidParameterValue",
                f"Unexpected file part {event.name[:64]!r}: the image goes in the part "
                "named 'file'.",
            )
        if event.name in fields:
            raise Ec2Error(
                "InvalidParameterValue", f"The form field {event.name[:64]} appears twice."
            )
        if len(fields) >= MAX_FIELDS:
            raise bad_body(f"more than {MAX_FIELDS} form fields")
        return event.name, bytearray()

    @staticmethod
    def decode(field: tuple[str, bytearray]) -> str:
        try:
            return field[1].decode("utf-8")
        except UnicodeDecodeError:
            raise Ec2Error(
                "InvalidParameterValue", f"The form field {field[0][:64]} is not valid UTF-8."
            ) from None

    # -- authentication, before any file byte is stored

    async def authenticate(self, fields: dict[str, str]) -> Principal:
        from econe.query import parse_params

        if self.authenticator is None or self.one is None or self.sessions is None:
            raise Ec2Error("Unavailable", "The service is starting; try again.")
        query_string = self.scope.get("query_string", b"")
        params = parse_params("GET", query_string, b"", None)
        params.update(fields)
        raw = RawRequest(
            method="POST",
            path=self.scope.get("path", "/"),
            query_string=query_string.decode("latin-1"),
            headers=self.headers,
            body=b"",
            params=params,
            client_addr=(self.scope.get("client") or (None,))[0],
        )
        auth = self.authenticator.authenticate
        if inspect.iscoroutinefunction(auth):
            principal = await auth(raw)
        else:  # user look-ups may call oned: never on the event loop thread
            principal = await asyncio.get_running_loop().run_in_executor(
                None, contextvars.copy_context().run, auth, raw
            )
        self.principal = principal
        self.outcome.user = principal.name
        version = params.get("Version", "")
        self.version = version if VERSION_RE.fullmatch(version) else DEFAULT_VERSION
        action = params.get("Action")
        if not action:
            raise Ec2Error("MissingAction", "The request must contain the parameter Action.")
        if action != ACTION:
            self.outcome.action = ascii(action[:64])  # quoted: no forged access-log lines
            raise Ec2Error(
                "InvalidAction",
                f"multipart/form-data bodies are only accepted for {ACTION}; send {action[:64]} "
                "as application/x-www-form-urlencoded.",
            )
        return principal

    async def start_file(self, fields: dict[str, str]) -> None:
        if self.temp is not None:
            raise Ec2Error("InvalidParameterValue", "The form field file appears twice.")
        unsigned = (
            self.config.auth == "ec2"
            and "Signature" not in fields
            and "authorization" not in self.headers
            and b"X-Amz-Signature" not in self.scope.get("query_string", b"")
        )
        if not fields or unsigned:
            raise Ec2Error(
                "InvalidRequest",
                f"{ACTION}: the text fields (Action, AWSAccessKeyId, Signature, …) must come "
                "before the file part, which must be the last part of the body.",
            )
        sigv4 = self.headers.get("authorization", "").startswith("AWS4-") or (
            b"X-Amz-Signature" in self.scope.get("query_string", b"")
        )
        # said before authenticating: a SigV4 signature covers the whole body, so it could not
        # hold anyway, and "check your secret" would mislead a user whose keys are right
        principal = None if sigv4 else await self.authenticate(fields)
        if principal is None or principal.via in ("sigv4", "presigned-v4"):
            raise Ec2Error(
                "InvalidRequest",
                f"{ACTION} must be signed with Signature Version 2 over its text fields: a "
                "Signature Version 4 signature cannot cover a body that is streamed to disk.",
            )
        check_name(fields.get("Name"))
        checksum = fields.get("Checksum")
        if checksum and not SHA256_HEX.fullmatch(checksum):
            raise Ec2Error(
                "InvalidParameterValue",
                f"Value ({checksum[:80]}) for parameter Checksum is invalid: expecting the "
                "SHA-256 of the file in hex.",
            )
        slot = self.slot = self.take_slot(principal.name)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.janitor.sweep, self.config.tmpdir)
        cfg = self.config
        temp = TempUpload(cfg.tmpdir, cfg.upload_max_size, cfg.upload_min_free)
        self.temp = temp
        try:  # room for this file and what the other uploads still announce
            await temp.open(slot.expected + self.janitor.slots.pending(besides=slot))
        except OSError as exc:
            log.error("cannot create an upload file in %s: %s", self.config.tmpdir, exc)
            raise Ec2Error("InternalError", "The server cannot store uploads right now.") from None
        slot.temp = temp
        self.window = (loop.time(), self.received)

    def take_slot(self, user: str) -> Slot:
        """A place among the uploads being received, or RequestLimitExceeded (503: the SDKs
        and clients take it as "try again later")."""
        slots, cfg = self.janitor.slots, self.config
        if slots.count(user) >= cfg.upload_max_per_user:
            raise Ec2Error(
                "RequestLimitExceeded",
                f"You already have {cfg.upload_max_per_user} uploads in progress, the most "
                "one user may send at once; try again when one has finished.",
            )
        if slots.count() >= cfg.upload_max_concurrent:
            raise Ec2Error(
                "RequestLimitExceeded",
                "The server is receiving as many uploads as it takes at once; try again later.",
            )
        declared = self.declared_length()  # the file is about all that is left of the body
        return slots.take(user, max(0, declared - self.received) if declared else 0)

    # -- the image

    async def register(self, fields: dict[str, str]) -> int:
        temp, principal = self.temp, self.principal
        assert temp is not None and principal is not None
        try:
            sha256, size = await temp.finish()
        except OSError as exc:
            log.error("writing upload file %s failed: %s", temp.path, exc)
            raise Ec2Error(
                "InternalError", f"The server could not store the upload: {exc.strerror}."
            ) from None
        checksum = fields.get("Checksum")
        if checksum and checksum.lower() != sha256:
            raise Ec2Error(
                "InvalidParameterValue",
                f"Value ({checksum}) for parameter Checksum is invalid: the uploaded file's "
                f"SHA-256 is {sha256} ({size} bytes received).",
            )
        name = check_name(fields.get("Name"))
        path = temp.path
        assert path is not None
        session = self.sessions.session_for(principal.name)
        loop = asyncio.get_running_loop()
        ds_id = self.config.datastore_id
        call = loop.run_in_executor(
            None, images.allocate, self.one, session, name, path, sha256, ds_id
        )
        try:
            image_id, created = await asyncio.shield(call)
        except asyncio.CancelledError:
            # oned may still create the image with this PATH: decide when the call returns.
            self.temp_taken = True
            call.add_done_callback(lambda f: self.settle(f, temp, principal))
            raise
        self.adopt(image_id, created, temp, principal)
        log.info(
            "UploadImage by %s: %d bytes, sha256 %s -> %s image %d (%s)",
            principal.name,
            size,
            sha256,
            "new" if created else "existing",
            image_id,
            name,
        )
        return image_id

    def settle(self, call: asyncio.Future, temp: TempUpload, principal: Principal) -> None:
        if call.cancelled() or call.exception() is not None:
            temp.discard()
        else:
            self.adopt(*call.result(), temp, principal)

    def adopt(self, image_id: int, created: bool, temp: TempUpload, principal: Principal) -> None:
        """Hand the temp file to the janitor, which removes it once image `image_id` is
        copied; a retried upload answered with an earlier image needs no copy: remove it."""
        self.temp_taken = True
        if not created:
            temp.discard()
            return
        path = temp.release()
        one, sessions, user = self.one, self.sessions, principal.name

        def probe() -> int | None:
            return images.image_state(
                one, sessions.session_for(user), sessions.admin_session(), image_id
            )

        self.janitor.watch(path, image_id, probe)


async def handle_upload(
    scope: dict[str, Any],
    receive: Any,
    send: Any,
    *,
    config: Config,
    authenticator: Any,
    one: Any,
    sessions: Any,
    request_id: str,
    janitor: UploadJanitor | None = None,
) -> UploadOutcome:
    """Serve one multipart UploadImage request completely (never raises an Ec2Error).

    `authenticator.authenticate(RawRequest) -> Principal` (sync or async), `one` an
    econe.one OneClient, `sessions` with `session_for(user)` and `admin_session()`, `janitor`
    the app's UploadJanitor (one per app, so temp files outlive the request).
    """
    outcome = UploadOutcome(request_id)
    upload = _Upload(
        scope, receive, config, authenticator, one, sessions, janitor or UploadJanitor(), outcome
    )
    try:
        try:
            image_id = await upload.run()
        except ClientGone:
            log.info("UploadImage %s: the client went away mid-upload; nothing kept", request_id)
            return outcome
        except Ec2Error as exc:
            if exc.code in ("RequestLimitExceeded", "InsufficientCapacity"):  # limits at work
                log.warning("UploadImage %s refused: %s", request_id, exc)
            elif exc.status >= 500:
                log.error("UploadImage %s failed: %s", request_id, exc)
            outcome.status = exc.status
            await send_xml(
                send,
                exc.status,
                error_xml(exc.code, exc.message, request_id),
                close=not upload.body_done,
            )
            return outcome
        except Exception:  # noqa: BLE001 - the client still gets EC2 XML
            log.exception("UploadImage %s failed", request_id)
            outcome.status = 500
            await send_xml(
                send,
                500,
                error_xml("InternalError", "An internal error has occurred.", request_id),
                close=not upload.body_done,
            )
            return outcome
        outcome.status = 200
        outcome.image_id = format_id("ami", image_id)
        await send_xml(send, 200, response_xml(image_id, upload.version, request_id))
        return outcome
    finally:
        if upload.temp is not None and not upload.temp_taken:
            upload.temp.discard()
        if upload.slot is not None:
            upload.janitor.slots.give_back(upload.slot)
