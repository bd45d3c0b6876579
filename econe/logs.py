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
