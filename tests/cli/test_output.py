"""Table and JSON formatting."""

from __future__ import annotations

import datetime as dt
import json

from econe.client.output import cell, field, records_table, table, to_json


def test_table_aligns_columns_under_headers():
    text = table(["Id", "State"], [["i-00000001", "running"], ["i-2", None]])
    assert text == ("Id          State\ni-00000001  running\ni-2         -\n")


def test_table_without_headers_and_empty_table():
    assert table(["A", "B"], [["x", "y"]], with_headers=False) == "x  y\n"
    assert table(["Alpha", "B"], []) == "Alpha  B\n"
    assert table(["A"], [], with_headers=False) == ""


def test_table_has_no_trailing_blanks():
    text = table(["Long header", "X"], [["a", ""]])
    assert all(line == line.rstrip() for line in text.splitlines())


def test_cells():
    when = dt.datetime(2026, 11, 23, 20, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert cell(when) == "2026-11-23T18:00:05Z"
    assert cell(True) == "yes" and cell(False) == "no"
    assert cell("") == "-" and cell(None) == "-"
    assert cell("two\nlines\ttab") == "two lines tab"
    assert cell(0) == "0"


def test_records_table_with_nested_fields():
    records = [{"InstanceId": "i-1", "State": {"Name": "running"}}, {"InstanceId": "i-2"}]
    columns = [("Id", field("InstanceId")), ("State", field("State", "Name"))]
    assert records_table(columns, records) == "Id   State\ni-1  running\ni-2  -\n"


def test_json_drops_metadata_and_formats_datetimes():
    response = {
        "ResponseMetadata": {"RequestId": "r"},
        "Volumes": [{"CreateTime": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "Size": 1}],
    }
    data = json.loads(to_json(response))
    assert data == {"Volumes": [{"CreateTime": "2026-01-02T03:04:05+00:00", "Size": 1}]}
