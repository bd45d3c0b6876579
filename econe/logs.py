"""Logging set-up: `:debug_level:` 0 ERROR, 1 WARNING, 2 INFO, 3 DEBUG (the seed's scale)."""

from __future__ import annotations

import logging
import sys

LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}

# The seed's log line: `<Www Mmm dd HH:MM:SS YYYY> [<first letter of severity>]: <message>`
_FORMAT = "%(asctime)s [%(levelname).1s]: %(message)s"
_DATEFMT = "%a %b %d %H:%M:%S %Y"


def setup_logging(debug_level: int, log_file: str | None = None) -> None:
    """Route econe's loggers (and uvicorn's errors) to stderr or `log_file`."""
    handler: logging.Handler
    if log_file:
        handler = logging.FileHandler(log_file)
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


def reopen_log(log_file: str) -> None:
    """After logrotate moved `log_file` away (SIGHUP): write to a new file of that name, the
    log handlers and, where they wrote to the old file (a daemon `start` ran), stdout/stderr."""
    import os

    old: set[tuple[int, int]] = set()
    for name in ("econe", "onesim", "uvicorn.error"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.FileHandler):
                handler.acquire()
                try:
                    if handler.stream is not None:
                        info = os.fstat(handler.stream.fileno())
                        old.add((info.st_dev, info.st_ino))
                    handler.close()  # the next record opens the file again, by its name
                finally:
                    handler.release()
    fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for stream in (sys.stdout, sys.stderr):
            info = os.fstat(stream.fileno())
            if (info.st_dev, info.st_ino) in old:
                stream.flush()
                os.dup2(fd, stream.fileno())
    finally:
        os.close(fd)
    logging.getLogger("econe").info("log file %s opened again (SIGHUP)", log_file)
