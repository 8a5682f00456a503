"""core.ml.uploads: the one reader every upload goes through (no db)."""

import codecs

import pytest

from core.ml.uploads import ReadLimits, UploadError, read_upload


def test_csv_with_bom_crlf_a_multi_line_record_and_short_and_long_rows():
    data = codecs.BOM_UTF8 + b' Text ,ID\r\n"first\nsecond",1\r\nonly text\r\n\r\nx,2,extra\r\n'
    upload = read_upload(data, filename="in.csv")
    assert upload.format == "csv" and upload.columns == ("text", "id")
    assert [(r.line, r.values, r.extra) for r in upload.records] == [
        (2, {"text": "first\nsecond", "id": "1"}, ()),
        (4, {"text": "only text", "id": None}, ()),
        (6, {"text": "x", "id": "2"}, ("extra",)),
    ]
    assert upload.rejected == ()


def test_broken_rows_are_rejected_one_by_one_with_their_line():
    data = b'text\nfine\n"never closed\n' + b"y" * 50 + b"\n"
    upload = read_upload(data, fmt="csv", limits=ReadLimits(max_line_bytes=40))
    assert [(r.line, r.reason) for r in upload.rejected] == [(3, "malformed"), (4, "line_too_long")]
    assert [r.values["text"] for r in upload.records] == ["fine"]


def test_jsonl_objects_and_what_is_not_one():
    data = b'{"Text": "a", "id": 7}\n\n[1]\n{"text": \n{"text": "b"}\n'
    upload = read_upload(data, filename="in.bin", lines_ok=True)  # detected by its first character
    assert upload.format == "jsonl"
    assert [(r.line, r.values) for r in upload.records] == [(1, {"text": "a", "id": 7}), (5, {"text": "b"})]
    assert [(r.line, r.reason) for r in upload.rejected] == [(3, "not_object"), (4, "malformed")]
    kept = read_upload(data, fmt="jsonl", keep_blank=True)
    assert [r.line for r in kept.records] == [1, 2, 5] and kept.records[1].values == {}


def test_plain_lines_when_allowed():
    upload = read_upload(b"one\r\n\r\ntwo", filename="texts.txt", lines_ok=True)
    assert upload.format == "lines" and [(r.line, r.values["text"]) for r in upload.records] == [
        (1, "one"),
        (3, "two"),
    ]
    assert len(read_upload(b"one\n\n", fmt="lines", keep_blank=True).records) == 2


@pytest.mark.parametrize(
    ("data", "kwargs", "code", "message"),
    [
        (b"", {}, "empty", "the file is empty"),
        (b" \n\n", {}, "empty", "the file is empty"),
        (b"text\nx\n" * 10, {"limits": ReadLimits(max_bytes=10)}, "too_large", "the limit is 10"),
        (b"text\n" + b"x\n" * 5, {"limits": ReadLimits(max_rows=3)}, "too_many_rows", "limit is 3"),
        ("text\ncaf\u00e9\n".encode("latin-1"), {}, "encoding", "byte 9 cannot be read"),
        ("text\nx\n".encode("utf-16"), {}, "utf16", "UTF-16 encoded"),
        (b"PK\x03\x04rest", {}, "archive", "spreadsheet or zip"),
        (b'[{"text": "a"}]', {"filename": "a.json"}, "json_array", "JSON array"),
        (b'"unclosed\n', {"fmt": "csv"}, "header", "could not read the header on line 1"),
    ],
)
def test_whole_file_problems_have_a_code_and_a_message(data, kwargs, code, message):
    with pytest.raises(UploadError, match=message) as info:
        read_upload(data, **kwargs)
    assert info.value.code == code
