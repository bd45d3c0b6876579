"""Logging set-up: `:debug_level:` 0 ERROR, 1 WARNING, 2 INFO, 3 DEBUG (the seed's scale)."""

from __future__ import annotations

import logging
import logging.handlers
import sys

LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}

# The seed's log line: `<Www Mmm dd HH:MM:SS YYYY> [<first letter of severity>]: <message>`
_FORMAT = "%(asctime)s [%(levelname).1s]: %(message)s"
_DATEFMT = "%a %b %d %H:%M:%S %Y"


def setup_logging(debug_level: int, log_file: str | None = None) -> None:
    """Route econe's loggers (and uvicorn's errors) to stderr or `log_file`."""
    handler: logging.Handler
    if log_file:  # a file moved away (logrotate) is followed by a new one of its name
        handler = logging.handlers.WatchedFileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT, _DATEFMT))
    level = LEVELS.get(debug_level, logging.DEBUG)
    for name in ("econe", "onesim", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    # One access line per request comes from econe.access; uvicorn's own would repeat it.
    logging.getLogger("uvicorn.access").disabled = True


def streams_writing_to(log_file: str) -> list:
    """Of stdout and stderr, those writing to `log_file` now (a daemon `start` ran)."""
    import os

    try:
        log = os.stat(log_file)
    except OSError:
        return []
    out = []
    for stream in (sys.stdout, sys.stderr):
        info = os.fstat(stream.fileno())
        if (info.st_dev, info.st_ino) == (log.st_dev, log.st_ino):
            out.append(stream)
    return out


def reopen_log(log_file: str, streams: list) -> None:
    """SIGHUP, after logrotate moved `log_file` away: `streams` (see streams_writing_to) go to
    a new file of that name; the log handler (WatchedFileHandler) follows the name itself."""
    import os

    try:
        fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:  # the directory gone: keep writing where they did
        logging.getLogger("econe").warning("cannot open %s again: %s", log_file, exc.strerror)
        return
    try:
        for stream in streams:
            stream.flush()
            os.dup2(fd, stream.fileno())
    finally:
        os.close(fd)
    logging.getLogger("econe").info("log file %s opened again (SIGHUP)", log_file)
