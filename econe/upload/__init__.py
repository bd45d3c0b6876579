"""UploadImage (the Ruby econe's non-AWS action): multipart body streamed to `:tmpdir:`.

Entry point for the EC2 Query front (econe/front.py), before it reads any body:

    from econe.upload import UploadJanitor, handle_upload, is_upload_request

    if is_upload_request(scope):          # POST + Content-Type: multipart/form-data
        outcome = await handle_upload(scope, receive, send, config=…, authenticator=…,
                                      one=…, sessions=…, request_id=…, janitor=…)

See docs/upload.md.
"""

from econe.upload.handler import handle_upload
from econe.upload.store import COPY_TIMEOUT, UploadJanitor
from econe.upload.wire import UploadOutcome, is_upload_request, response_xml

__all__ = [
    "COPY_TIMEOUT",
    "UploadJanitor",
    "UploadOutcome",
    "handle_upload",
    "is_upload_request",
    "response_xml",
]
