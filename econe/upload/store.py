"""Upload temp files: written off the event loop, and removed exactly when they are not needed.

`TempUpload` writes one upload into `:tmpdir:` in batches on a worker thread (one batch in
flight while the next is received, so memory stays at about two batches), hashes it with
SHA-256 on the way and leaves all-zero blocks as holes (a sparse copy of a sparse image).

It keeps `:upload_min_free:` bytes of the file system free: `open(need)` refuses an upload
that would not leave that much after `need` bytes, and each batch written checks it again
(a full disk, or other writers, stop the upload with `NoRoom`).

`UploadJanitor` owns temp files once OpenNebula has been given their path: it polls
`one.image.info` with backoff and removes the file when the image leaves LOCKED (READY, ERROR,
or any other state: the datastore driver is done with it), when the image is gone, or after
`COPY_TIMEOUT` seconds. `sweep()` removes leftovers of a previous gateway process (crash,
restart) by age, so no file outlives `COPY_TIMEOUT` by much even without a watcher. Its
`slots` count the uploads being received, per user and in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from econe.errors import Ec2Error

log = logging.getLogger("econe.upload")

PREFIX = "econe-upload-"
BATCH = 1024 * 1024  # bytes handed to the writer thread at once
BLOCK = 64 * 1024  # sparse granularity: an all-zero block of this size becomes a hole
_ZERO = bytes(BLOCK)

# How long a temp file is kept for OpenNebula's datastore driver to copy it, at most. The copy
# of a large image over a slow datastore can take long; a file older than this is assumed
# abandoned (the image never left LOCKED, or the watcher was lost with its process).
COPY_TIMEOUT = 6 * 3600.0
POLL_FIRST = 0.5  # first image.info poll after the allocation, seconds
POLL_MAX = 15.0  # polls back off (x1.5) up to this interval

# Image states (include/Image.h): still being copied while INIT or LOCKED.
_COPYING = {0, 4}


class NoRoom(Ec2Error):
    """:tmpdir: has not enough free space for an upload (503: it may have room later)."""

    def __init__(self, message: str):
        super().__init__("InsufficientCapacity", message, status=503)


def _free(stat: os.statvfs_result) -> int:
    return stat.f_bavail * stat.f_frsize


def _remove(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.error("cannot remove upload temp file %s: %s", path, exc.strerror)
        return False


class TempUpload:
    """One upload's temp file. `await write(chunk)` … `await finish()` → (sha256, size).

    `discard()` removes the file (idempotent, synchronous, safe in `finally`)."""

    def __init__(self, tmpdir: str | os.PathLike, max_size: int, min_free: int = 0):
        self.tmpdir = Path(tmpdir)
        self.max_size = max_size
        self.min_free = min_free
        self.size = 0
        self.path: str | None = None
        self._fd: int | None = None
        self._hash = hashlib.sha256()
        self._batch: list[bytes] = []
        self._batched = 0
        self._written = 0  # file offset of the next batch
        self._pending: asyncio.Future | None = None

    async def open(self, need: int = 0) -> str:
        """Create the file if `need` more bytes still leave `min_free` free (else NoRoom)."""
        loop = asyncio.get_running_loop()
        self._fd, self.path = await loop.run_in_executor(None, self._open, need)
        return self.path

    def _open(self, need: int) -> tuple[int, str]:
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        free = _free(os.statvfs(self.tmpdir))
        if free < need + self.min_free:
            log.warning(
                "upload refused: %s has %d bytes free, the upload needs %d and %d stay free",
                self.tmpdir,
                free,
                need,
                self.min_free,
            )
            raise NoRoom(
                "The server has not enough free space to receive this upload now; try again later."
            )
        return tempfile.mkstemp(prefix=PREFIX, suffix=".img", dir=self.tmpdir)

    def too_large(self, more: int) -> bool:
        return self.size + more > self.max_size

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        self._batch.append(data)
        self._batched += len(data)
        if self._batched >= BATCH:
            await self._flush()

    async def _flush(self) -> None:
        if self._pending is not None:  # at most one batch in flight
            # shielded: a cancelled request must not mark a running write as done (discard()
            # would then close the descriptor under the writer thread)
            await asyncio.shield(self._pending)
            self._pending = None
        if not self._batch:
            return
        data = b"".join(self._batch) if len(self._batch) > 1 else self._batch[0]
        self._batch, self._batched = [], 0
        offset, self._written = self._written, self._written + len(data)
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(None, self._write_at, data, offset)

    def _write_at(self, data: bytes, offset: int) -> None:
        assert self._fd is not None
        self._hash.update(data)  # releases the GIL for large buffers
        for start in range(0, len(data), BLOCK):
            piece = data[start : start + BLOCK]
            if piece == _ZERO if len(piece) == BLOCK else not piece.strip(b"\0"):
                continue  # leave a hole
            view, done = memoryview(piece), 0
            try:
                while done < len(piece):
                    done += os.pwrite(self._fd, view[done:], offset + start + done)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                self._out_of_room(_free(os.fstatvfs(self._fd)))
        if self.min_free:  # checked per batch: other writers fill the disk too
            free = _free(os.fstatvfs(self._fd))
            if free < self.min_free:
                self._out_of_room(free)

    def _out_of_room(self, free: int) -> None:
        log.error(
            "upload stopped: %s has %d bytes free, %d must stay free",
            self.tmpdir,
            free,
            self.min_free,
        )
        raise NoRoom("The server ran out of space while receiving this upload; try again later.")

    async def finish(self) -> tuple[str, int]:
        """Write what is left, set the final length (trailing holes), close the file."""
        await self._flush()
        await self._flush()  # wait for the last batch
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._close, True)
        return self._hash.hexdigest(), self.size

    def _close(self, truncate: bool = False) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if truncate:
                os.ftruncate(fd, self._written)
        finally:
            os.close(fd)

    def discard(self) -> None:
        """Close and remove the file now (any failure, disconnect or duplicate)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            if not pending.done():
                # a batch is being written on a worker thread: close and remove when done
                pending.add_done_callback(lambda _f: self.discard())
                return
            if not pending.cancelled():
                pending.exception()  # retrieved: a failed write of a discarded file is moot
        self._close()
        if self.path is not None:
            _remove(self.path)

    def release(self) -> str:
        """Hand the closed file over (to the janitor); `discard()` no longer touches it."""
        assert self._fd is None and self.path is not None
        path, self.path = self.path, None
        return path


@dataclass(eq=False)
class Slot:
    """One upload being received: whose, and the file bytes it announced (0: unknown)."""

    user: str
    expected: int
    temp: TempUpload | None = None

    def pending(self) -> int:
        """Bytes it has yet to write: room the next upload must leave it."""
        return max(0, self.expected - (self.temp.size if self.temp else 0))


class UploadSlots:
    """The uploads being received by this gateway process (all on its event loop thread)."""

    def __init__(self) -> None:
        self.active: list[Slot] = []

    def count(self, user: str | None = None) -> int:
        return sum(1 for slot in self.active if user is None or slot.user == user)

    def take(self, user: str, expected: int) -> Slot:
        slot = Slot(user, expected)
        self.active.append(slot)
        return slot

    def give_back(self, slot: Slot) -> None:
        with contextlib.suppress(ValueError):
            self.active.remove(slot)

    def pending(self, besides: Slot) -> int:
        return sum(slot.pending() for slot in self.active if slot is not besides)


StateProbe = Callable[[], int | None]  # image state, or None if the image is gone; may raise


class UploadJanitor:
    """Removes temp files when OpenNebula no longer needs them; one per gateway app."""

    def __init__(
        self,
        *,
        timeout: float = COPY_TIMEOUT,
        poll_first: float = POLL_FIRST,
        poll_max: float = POLL_MAX,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.timeout = timeout
        self.poll_first = poll_first
        self.poll_max = poll_max
        self._clock = clock
        self._tasks: set[asyncio.Task] = set()
        self.slots = UploadSlots()  # one per app too: the caps count all its uploads

    def watch(self, path: str, image_id: int, probe: StateProbe) -> asyncio.Task:
        """Remove `path` once image `image_id` is copied (polled with `probe` on a thread)."""
        task = asyncio.get_running_loop().create_task(self._watch(path, image_id, probe))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _watch(self, path: str, image_id: int, probe: StateProbe) -> None:
        loop = asyncio.get_running_loop()
        deadline = self._clock() + self.timeout
        delay = self.poll_first
        try:
            while True:
                await asyncio.sleep(min(delay, max(0.0, deadline - self._clock())))
                try:
                    state = await loop.run_in_executor(None, probe)
                except Exception as exc:  # noqa: BLE001 - oned down: keep the file, retry
                    log.warning("image %d: state poll failed (%s); retrying", image_id, exc)
                else:
                    if state is None or state not in _COPYING:
                        what = "gone" if state is None else f"in state {state}"
                        log.info("image %d %s: removing its upload file %s", image_id, what, path)
                        return
                if self._clock() >= deadline:
                    log.warning(
                        "image %d still not copied after %.0f s: removing its upload file %s",
                        image_id,
                        self.timeout,
                        path,
                    )
                    return
                delay = min(delay * 1.5, self.poll_max)
        finally:
            # Also on cancellation (shutdown) the file goes only if the copy finished; a
            # cancelled watcher leaves it to sweep() after COPY_TIMEOUT.
            if not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                await loop.run_in_executor(None, _remove, path)

    async def wait(self) -> None:
        """Until every watcher finished (tests, orderly shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def sweep(self, tmpdir: str | os.PathLike, now: float | None = None) -> list[str]:
        """Remove `econe-upload-*` files in `tmpdir` not modified for `timeout` seconds."""
        now = time.time() if now is None else now
        removed = []
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.scandir(tmpdir):
                if not entry.name.startswith(PREFIX) or not entry.is_file(follow_symlinks=False):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > self.timeout:
                        if _remove(entry.path):
                            log.warning("removed stale upload file %s", entry.path)
                            removed.append(entry.path)
        return removed
