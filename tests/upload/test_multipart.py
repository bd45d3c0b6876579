"""The streaming multipart parser: chunk borders anywhere, CRLF edge cases, malformed bodies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from econe.upload.multipart import (
    MultipartError,
    MultipartParser,
    PartEnd,
    PartStart,
    boundary_from_content_type,
    parse_options_header,
)

B = b"econe-0123456789abcdef"


def body(parts: list[tuple[str, bytes, str | None]], boundary: bytes = B, tail=b"\r\n") -> bytes:
    out = []
    for name, data, filename in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = f"Content-Disposition: {disp}\r\n"
        if filename:
            head += "Content-Type: application/octet-stream\r\n"
        out.append(b"--" + boundary + b"\r\n" + head.encode() + b"\r\n" + data + b"\r\n")
    return b"".join(out) + b"--" + boundary + b"--" + tail


def parse(chunks, boundary: bytes = B) -> list[tuple[str | None, str | None, bytes]]:
    """[(name, filename, data)] — and checks the event sequence is well-formed."""
    parser = MultipartParser(boundary)
    parts: list[list] = []
    open_part = False
    for chunk in chunks:
        for event in parser.feed(chunk):
            if isinstance(event, PartStart):
                assert not open_part
                parts.append([event.name, event.filename, bytearray()])
                open_part = True
            elif isinstance(event, PartEnd):
                assert open_part
                open_part = False
            else:
                assert open_part and isinstance(event, bytes) and event
                parts[-1][2].extend(event)
    parser.finish()
    assert not open_part
    return [(n, f, bytes(d)) for n, f, d in parts]


def expected(parts):
    return [(n, f, d) for n, d, f in parts]


# Content designed to look like delimiters: CR, LF, dashes and boundary prefixes.
TRICKY = (
    b"\r\n--econe-0123456789abcde"  # a delimiter missing its last byte
    b"\r\r\n-\r\n--\r\n--econe"
    b"--econe-0123456789abcdef"  # the boundary without the leading CRLF: plain data
    b"\x00\xff\r"
)
PARTS = [
    ("Action", b"UploadImage", None),
    ("Signature", b"abc+/=", None),
    ("Empty", b"", None),
    ("file", TRICKY * 3, "disk.img"),
]


def test_whole_body_in_one_chunk():
    assert parse([body(PARTS)]) == expected(PARTS)


def test_split_at_every_byte_position():
    data = body(PARTS)
    for i in range(len(data) + 1):
        assert parse([data[:i], data[i:]]) == expected(PARTS), i


def test_split_into_single_bytes():
    data = body(PARTS)
    assert parse([data[i : i + 1] for i in range(len(data))]) == expected(PARTS)


def test_every_pair_of_split_points_in_the_delimiter_region():
    data = body(PARTS)
    start = data.index(b"\r\n--" + B + b"--") - 4
    for i in range(start, len(data)):
        for j in range(i, len(data) + 1):
            assert parse([data[:i], data[i:j], data[j:]]) == expected(PARTS)


boundaries = st.text(alphabet="abcXYZ019'()+_,-./:=?", min_size=1, max_size=70).map(str.encode)
contents = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.sampled_from([b"\r", b"\n", b"-", b"--", b"\r\n", b"\r\n--", b"x", b"\x00", b"a"]),
        max_size=60,
    ).map(b"".join),
)


@settings(max_examples=300, deadline=None)
@given(
    boundary=boundaries,
    fields=st.lists(contents, max_size=4),
    file=contents,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
    data=st.data(),
)
def test_property_any_content_any_chunking(boundary, fields, file, cuts, data):
    # Content may hold anything except the delimiter itself (RFC 2046 requires the sender to
    # choose a boundary that does not occur); inject boundary prefixes on purpose.
    prefix = data.draw(st.integers(min_value=0, max_value=len(boundary) - 1))
    file = file + b"\r\n--" + boundary[:prefix]
    parts = [(f"f{i}", c, None) for i, c in enumerate(fields)] + [("file", file, "x.img")]
    raw = body(parts, boundary)
    if any(b"\r\n--" + boundary in (b"\r\n" + c + b"\r\n")[:-2] for _, c, _ in parts):
        return  # content holds a real delimiter: not a valid body
    points = sorted({c % (len(raw) + 1) for c in cuts})
    chunks = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    assert parse(chunks, boundary) == expected(parts)


def test_preamble_epilogue_padding_and_no_final_crlf():
    data = (
        b"this is a preamble\r\n--" + B + b"  \t\r\n"
        b'Content-Disposition: form-data; name="a"\r\n\r\nvalue\r\n--' + B + b"--"
    )
    assert parse([data]) == [("a", None, b"value")]
    assert parse([data + b"\r\nepilogue --" + B + b"\r\n garbage"]) == [("a", None, b"value")]


def test_part_without_headers_and_folded_header():
    data = (
        b"--" + B + b"\r\n\r\nanonymous\r\n--" + B + b"\r\n"
        b'Content-Disposition: form-data;\r\n\tname="folded"\r\n\r\nv\r\n--' + B + b"--\r\n"
    )
    assert parse([data]) == [(None, None, b"anonymous"), ("folded", None, b"v")]


def test_data_ending_in_cr_and_crlf():
    for content in (b"\r", b"\r\n", b"\r\n\r\n", b"a\r", b"\n\r"):
        parts = [("file", content, "f")]
        data = body(parts)
        for i in range(len(data) + 1):
            assert parse([data[:i], data[i:]]) == expected(parts)


@pytest.mark.parametrize(
    "data, why",
    [
        (b"no delimiter at all", "no multipart delimiter"),
        (b"--" + B + b"\r\nContent-Disposition: form-data; name=a\r\n\r\nv", "ended before"),
        (b"--" + B + b"\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--" + B, "ended"),
        (b"--" + B + b"X\r\n\r\n", "not followed by a line break"),
        (b"--" + B + b"\r\nno colon here\r\n\r\nv\r\n--" + B + b"--", "malformed part header"),
        (b"--" + B + b"\r\nContent-Disposition: attachment\r\n\r\n\r\n--" + B + b"--", "not"),
        (b"--" + B + b" " * 100 + b"\r\n", "padding"),
    ],
)
def test_malformed(data, why):
    parser = MultipartParser(B)
    with pytest.raises(MultipartError, match=why):
        parser.feed(data)
        parser.finish()


def test_header_block_is_capped_while_streaming():
    parser = MultipartParser(B, max_header_bytes=1024)
    parser.feed(b"--" + B + b"\r\nX-Long: ")
    with pytest.raises(MultipartError, match="too large"):
        for _ in range(10):
            parser.feed(b"a" * 200)


def test_memory_is_bounded_by_the_delimiter_not_the_part():
    parser = MultipartParser(B)
    parser.feed(b"--" + B + b'\r\nContent-Disposition: form-data; name="file"\r\n\r\n')
    total = 0
    for _ in range(64):
        total += sum(len(e) for e in parser.feed(b"\r" * 4096) if isinstance(e, bytes))
        assert len(parser._buf) < len(B) + 4
    assert total >= 64 * 4096 - len(B) - 4


def test_options_header_and_boundary():
    assert parse_options_header('form-data; name="a;b"; filename="c \\"d\\""') == (
        "form-data",
        {"name": "a;b", "filename": 'c "d"'},
    )
    assert boundary_from_content_type('multipart/form-data; boundary="a b"') == b"a b"
    assert boundary_from_content_type("Multipart/Form-Data;boundary=xyz") == b"xyz"
    for bad in (None, "text/plain", "multipart/form-data", "multipart/form-data; boundary="):
        with pytest.raises(MultipartError):
            boundary_from_content_type(bad)
