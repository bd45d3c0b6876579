"""UploadImage outside multipart/form-data.

A real UploadImage is a multipart POST that econe.upload streams before Connexion sees it
(econe/front.py hands it over first); this handler only answers requests that reached the
action without a file part, e.g. a form-encoded POST or the virtual JSON route.
"""

from __future__ import annotations

from typing import Any

from econe.errors import Ec2Error


def upload_image_without_file(rt: Any) -> dict:
    raise Ec2Error(
        "MissingParameter",
        "The request must contain the parameter file: UploadImage is a multipart/form-data "
        "POST with the image in a part named file (econe upload FILE sends one).",
    )
