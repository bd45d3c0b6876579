"""`python -m tests.upload.serve …`: `econe-server run --simulator`, plus UploadImage in front.

Until econe/front.py hands multipart requests to econe.upload itself, the upload tests run
the real gateway app (real authenticator, engine, onesim) wrapped by the same few lines the
front needs (docs/upload.md), in a process of its own so its memory can be measured.
"""

from __future__ import annotations

import argparse
import uuid

import uvicorn

from econe.app import create_app
from econe.config import default_config_path, load_config
from econe.logs import setup_logging
from econe.server_cli import _print_demo_banner, _start_simulator
from econe.upload import UploadJanitor, handle_upload, is_upload_request


def upload_front(app, config, janitor: UploadJanitor):
    """What Ec2QueryFront does with a multipart POST (the patch in docs/upload.md)."""

    async def asgi(scope, receive, send):
        if scope["type"] == "http" and is_upload_request(scope):
            state = app.econe_state
            await handle_upload(
                scope,
                receive,
                send,
                config=config,
                authenticator=state.authenticator,
                one=getattr(state.engine, "one", None),
                sessions=getattr(state.engine, "sessions", None),
                request_id=str(uuid.uuid4()),
                janitor=janitor,
            )
            return
        await app(scope, receive, send)

    return asgi


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sim-port", type=int, default=0)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--sim-speed", type=float, default=0.05)
    ap.add_argument("--upload-max-size", type=int)
    ap.add_argument("--config")
    args = ap.parse_args()
    sim, overrides = _start_simulator(args)
    if args.upload_max_size is not None:
        overrides["upload_max_size"] = args.upload_max_size
    cfg = load_config(
        args.config or default_config_path(), host="127.0.0.1", port=args.port, **overrides
    )
    setup_logging(cfg.debug_level, None)
    app = create_app(cfg)
    _print_demo_banner(cfg)
    server = uvicorn.Server(
        uvicorn.Config(
            upload_front(app, cfg, UploadJanitor()),
            host=cfg.host,
            port=cfg.port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
    )
    try:
        server.run()
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
