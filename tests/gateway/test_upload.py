"""UploadImage: multipart/form-data, file stored after the text fields are authenticated."""

from __future__ import annotations

import os

from econe.config import Config

from .conftest import botocore_parse


def multipart(
    fields: dict[str, str], file: bytes | None, boundary: str = "XyZ", name: str = "file"
) -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    if file is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="img.raw"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + file
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


HEADERS = {"content-type": "multipart/form-data; boundary=XyZ"}
FIELDS = {
    "Action": "UploadImage",
    "Version": "2008-12-01",
    "AWSAccessKeyId": "alice",
    "Name": "img",
}


def test_upload_stores_the_file_and_passes_its_path(make_client, engine, tmp_path):
    seen = {}

    def upload(body, ctx):
        seen.update(body)
        with open(body["file"]["path"], "rb") as fh:
            seen["content"] = fh.read()
        return {"ImageId": "ami-00000007"}

    engine.results["UploadImage"] = upload
    with make_client(config=Config(tmpdir=str(tmp_path))) as c:
        resp = c.post("/", content=multipart(FIELDS, b"\x00image\xff" * 1000), headers=HEADERS)
    assert resp.status_code == 200, resp.text
    assert "<RegisterImageResponse " in resp.text
    assert botocore_parse("RegisterImage", 200, resp.content) == {"ImageId": "ami-00000007"}
    assert seen["Name"] == "img" and seen["content"] == b"\x00image\xff" * 1000
    assert seen["file"]["size"] == 7000 and seen["file"]["filename"] == "img.raw"
    assert os.path.dirname(seen["file"]["path"]) == str(tmp_path)
    assert os.path.exists(seen["file"]["path"])  # oned copies it later


def test_unauthenticated_upload_stores_nothing(make_client, engine, auth, tmp_path):
    with make_client(config=Config(tmpdir=str(tmp_path))) as c:
        resp = c.post(
            "/", content=multipart(dict(FIELDS, AWSAccessKeyId="bad"), b"x" * 100), headers=HEADERS
        )
    assert resp.status_code == 401
    assert os.listdir(tmp_path) == [] and not engine.calls


def test_failed_upload_leaves_no_file(make_client, engine, tmp_path):
    from econe.errors import Ec2Error

    engine.results["UploadImage"] = Ec2Error("InvalidParameterValue", "no")
    with make_client(config=Config(tmpdir=str(tmp_path))) as c:
        resp = c.post("/", content=multipart(FIELDS, b"x" * 100), headers=HEADERS)
        assert resp.status_code == 400
        resp = c.post("/", content=multipart(dict(FIELDS, Bogus="1"), b"x" * 100), headers=HEADERS)
        assert resp.status_code == 400
        assert (
            botocore_parse("RegisterImage", 400, resp.content)["Error"]["Code"]
            == "UnknownParameter"
        )
    assert os.listdir(tmp_path) == []


def test_file_size_cap_and_file_only_for_upload(make_client, engine, tmp_path):
    with make_client(config=Config(tmpdir=str(tmp_path), upload_max_size=1000)) as c:
        resp = c.post("/", content=multipart(FIELDS, b"x" * 5000), headers=HEADERS)
        assert resp.status_code == 413
        fields = dict(FIELDS, Action="DescribeRegions")
        resp = c.post("/", content=multipart(fields, b"x" * 10), headers=HEADERS)
        assert resp.status_code == 400
        resp = c.post("/", content=multipart(FIELDS, b"x" * 10, name="other"), headers=HEADERS)
        assert resp.status_code == 400
        # text-only multipart works for any action
        resp = c.post("/", content=multipart({"Action": "DescribeRegions"}, None), headers=HEADERS)
        assert resp.status_code == 200
        resp = c.post("/", content=b"garbage", headers=HEADERS)
        assert resp.status_code == 400
    assert os.listdir(tmp_path) == []
    assert [call[0] for call in engine.calls] == ["DescribeRegions"]
