"""core.ml.datasets: upload parsing, validation, PII scrubbing, splitting, fingerprint and report (no db)."""

import csv
import io
import json
from collections import Counter
from dataclasses import replace

import pytest

from core.ml.datasets import (
    DatasetError,
    Limits,
    RejectedRow,
    Scrub,
    fingerprint_rows,
    iban_valid,
    luhn_valid,
    parse_dataset,
    report_csv,
    scrub_text,
    stratified_split,
)
from core.ml.errors import MLError


def _csv(*lines: str, newline: str = "\n") -> bytes:
    return (newline.join(lines) + newline).encode("utf-8")


def _jsonl(*objects: object) -> bytes:
    return ("\n".join(json.dumps(obj) for obj in objects) + "\n").encode("utf-8")


def _reasons(parsed) -> dict[int, str]:
    return {row.line: row.reason for row in parsed.rejected}


def _classify(data: bytes, **kwargs):
    return parse_dataset(data=data, task="classification", **kwargs)


GOOD = ("text,label", "great product,pos", "terrible service,neg")


# --- whole-file errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \n\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\r\n"])
def test_empty_file_is_refused(data):
    with pytest.raises(DatasetError, match="^the file is empty$"):
        _classify(data)


def test_dataset_error_is_an_ml_error_with_a_message():
    with pytest.raises(MLError) as info:
        _classify(b"")
    assert info.value.message == "the file is empty"


def test_single_class_is_refused():
    with pytest.raises(DatasetError, match="needs at least 2 labels; every valid row has label 'pos'"):
        _classify(_csv("text,label", "a,pos", "b,pos", "c,pos"))


def test_single_class_after_rejections_is_refused_with_the_rejections():
    with pytest.raises(DatasetError) as info:
        _classify(_csv("text,label", "a,pos", "b,pos", ",neg"))
    assert "needs at least 2 labels" in info.value.message
    assert info.value.rejected == (RejectedRow(line=4, reason="empty_text", detail="column 'text' is empty"),)


def test_missing_column_names_it_and_the_columns_found():
    with pytest.raises(DatasetError) as info:
        _classify(_csv("text,lbl", "a,pos", "b,neg"))
    assert info.value.message == "missing required column 'label'; found columns: text, lbl"


def test_extra_column_is_refused_by_name():
    with pytest.raises(DatasetError) as info:
        _classify(_csv("text,label,id,notes", "a,pos,1,x", "b,neg,2,y"))
    assert info.value.message == "unexpected column(s) 'id', 'notes'; expected exactly: text, label"


def test_duplicate_column_is_refused():
    with pytest.raises(DatasetError, match="column 'text' appears more than once"):
        _classify(_csv("text,label,text", "a,pos,a"))


def test_semicolon_separated_file_gets_a_hint():
    with pytest.raises(DatasetError, match="values must be separated by commas"):
        _classify(_csv("text;label", "a;pos", "b;neg"))


def test_header_only_has_no_valid_rows():
    with pytest.raises(DatasetError, match="^no valid rows: the file has no data rows$"):
        _classify(_csv("text,label"))


def test_all_rows_rejected_summarises_the_reasons():
    with pytest.raises(DatasetError) as info:
        _classify(_csv("text,label", ",pos", "a,", ",neg"))
    assert info.value.message == "no valid rows: all 3 rows were rejected (1 empty_label, 2 empty_text)"
    assert [row.line for row in info.value.rejected] == [2, 3, 4]


def test_too_few_rows_counts_accepted_rows_in_total():
    with pytest.raises(DatasetError, match="too few rows: 2 valid, at least 3 needed"):
        _classify(_csv(*GOOD), limits=Limits(min_rows=3))
    assert len(_classify(_csv(*GOOD), limits=Limits(min_rows=2)).rows) == 2


def test_too_many_rows_stops_reading():
    data = _csv("text,label", *(f"row {i},{'ab'[i % 2]}" for i in range(11)))
    with pytest.raises(DatasetError, match="too many rows: the limit is 10 data rows per file"):
        _classify(data, limits=Limits(max_rows=10))
    assert len(_classify(data, limits=Limits(max_rows=11)).rows) == 11


def test_too_many_labels():
    data = _csv("text,label", *(f"row {i},label{i}" for i in range(4)))
    with pytest.raises(DatasetError, match="too many labels: 4; the limit is 3"):
        _classify(data, limits=Limits(max_labels=3))


def test_whole_file_not_utf8_is_refused():
    latin1 = "text,label\ncafé crème,pos\nthé glacé,neg\n".encode("latin-1")
    with pytest.raises(DatasetError, match="the file is not UTF-8 text") as info:
        _classify(latin1)
    assert {row.reason for row in info.value.rejected} == {"bad_encoding"}
    with pytest.raises(DatasetError, match="the file is not UTF-8 text"):
        _classify("téxt,label\na,pos\n".encode("latin-1"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("text,label\na,b\n".encode("utf-16"), "the file is UTF-16 encoded; save it as UTF-8"),
        (b"PK\x03\x04\x14\x00rest-of-xlsx", "the file is a spreadsheet or zip archive"),
        (b'[{"text": "a", "label": "b"}]', "the file is a JSON array; upload JSON Lines"),
    ],
)
def test_wrong_kind_of_file_is_named(data, message):
    with pytest.raises(DatasetError, match=message):
        _classify(data, filename="upload.json" if data.startswith(b"[") else None)


def test_programming_errors_are_not_dataset_errors():
    with pytest.raises(ValueError, match="unknown task"):
        parse_dataset(data=_csv(*GOOD), task="regression")
    with pytest.raises(ValueError, match="unknown format"):
        _classify(_csv(*GOOD), fmt="xlsx")


# --- CSV -----------------------------------------------------------------------------------------------


def test_csv_with_bom_crlf_quoted_newline_and_padded_header():
    data = (
        b"\xef\xbb\xbf Text , LABEL \r\n" + b'"first line\r\nsecond   line",pos\r\n' + b'"say ""hi""",neg\r\n'
    )
    parsed = _classify(data)
    assert parsed.format == "csv"
    assert parsed.rows == (("first line second line", "pos"), ('say "hi"', "neg"))
    assert parsed.labels == ("neg", "pos")
    assert parsed.rejected == ()
    assert parsed.total_lines == 4


def test_csv_columns_may_come_in_any_order():
    parsed = _classify(_csv("label,text", "pos,great", "neg,awful"))
    assert parsed.rows == (("great", "pos"), ("awful", "neg"))


def test_non_utf8_bytes_in_one_csv_row_reject_only_that_row():
    data = _csv("text,label", "fine,pos") + b"caf\xe9,neg\n" + _csv("also fine,neg")
    parsed = _classify(data)
    assert parsed.rows == (("fine", "pos"), ("also fine", "neg"))
    assert parsed.rejected == (
        RejectedRow(line=3, reason="bad_encoding", detail="the row contains bytes that are not valid UTF-8"),
    )


def test_ten_megabyte_csv_line_is_rejected_and_the_rest_kept():
    huge = b"x" * 10_000_000 + b",pos\n"
    data = _csv("text,label", "before,pos") + huge + _csv("after,neg")
    parsed = _classify(data)
    assert parsed.rows == (("before", "pos"), ("after", "neg"))
    assert parsed.rejected == (
        RejectedRow(line=3, reason="line_too_long", detail="line is 10000005 bytes; the limit is 1000000"),
    )


def test_over_long_line_as_header_is_a_file_error():
    with pytest.raises(DatasetError, match="could not read the header on line 1: line is 2001 bytes"):
        _classify(b"t" * 2000 + b"\n" + _csv("a,b"), limits=Limits(max_line_bytes=1000))


def test_csv_field_beyond_the_csv_module_limit_is_too_long():
    data = _csv("text,label", "ok,pos", "y" * 200_000 + ",neg", "fine,neg")
    parsed = _classify(data)
    assert parsed.rows == (("ok", "pos"), ("fine", "neg"))
    assert _reasons(parsed) == {3: "too_long"}


def test_wrong_number_of_values_is_malformed():
    parsed = _classify(_csv("text,label", "a,pos", "b,neg,extra", "c,neg"))
    assert parsed.rejected == (RejectedRow(line=3, reason="malformed", detail="expected 2 values, found 3"),)
    assert len(parsed.rows) == 2


def test_bad_quoting_is_malformed_and_parsing_resumes():
    parsed = _classify(_csv("text,label", '"quoted"junk,pos', "b,neg", "c,pos"))
    assert parsed.rejected[0].line == 2
    assert parsed.rejected[0].reason == "malformed"
    assert parsed.rows == (("b", "neg"), ("c", "pos"))


def test_unterminated_quote_rejects_its_line_and_resumes_on_the_next():
    parsed = _classify(_csv("text,label", "a,pos", '"never closed,neg', "b,neg", "c,pos"))
    assert parsed.rejected == (
        RejectedRow(line=3, reason="malformed", detail="quoted field is never closed"),
    )
    assert parsed.rows == (("a", "pos"), ("b", "neg"), ("c", "pos"))


def test_blank_lines_are_skipped_but_counted_in_line_numbers():
    parsed = _classify(_csv("text,label", "", "a,pos", "   ", "b,", "c,neg"))
    assert parsed.rejected == (RejectedRow(line=5, reason="empty_label", detail="column 'label' is empty"),)
    assert parsed.total_lines == 6


# --- row rules ---------------------------------------------------------------------------------------


def test_whitespace_is_normalised():
    parsed = _classify(_csv("text,label", '"  many \t  spaces\u00a0here  ", pos ', "x,neg"))
    assert parsed.rows[0] == ("many spaces here", "pos")


def test_over_long_text_is_rejected():
    limits = Limits(max_text_chars=10)
    parsed = _classify(_csv("text,label", "short,pos", "much too long text,neg", "tiny,neg"), limits=limits)
    assert parsed.rejected == (
        RejectedRow(line=3, reason="too_long", detail="column 'text' has 18 characters; the limit is 10"),
    )


def test_duplicates_keep_the_first_and_name_conflicting_labels():
    data = _csv("text,label", "Great product,pos", "great   PRODUCT,pos", "bad,neg", "GREAT product,neg")
    parsed = _classify(data)
    assert parsed.rows == (("Great product", "pos"), ("bad", "neg"))
    assert parsed.rejected == (
        RejectedRow(line=3, reason="duplicate", detail="same text as line 2"),
        RejectedRow(
            line=5,
            reason="duplicate",
            detail="same text as line 2 but with label 'neg' instead of 'pos'; kept line 2",
        ),
    )


def test_unknown_labels_are_rejected_when_labels_are_given():
    data = _csv("text,label", "a,pos", "b,neg", "c,maybe", "d,Pos")
    parsed = _classify(data, allowed_labels={"pos", "neg"})
    assert parsed.rows == (("a", "pos"), ("b", "neg"))
    assert parsed.rejected == (
        RejectedRow(line=4, reason="unknown_label", detail="label 'maybe' is not one of the allowed labels"),
        RejectedRow(line=5, reason="unknown_label", detail="label 'Pos' is not one of the allowed labels"),
    )
    assert _classify(data).labels == ("Pos", "maybe", "neg", "pos")


# --- JSONL -------------------------------------------------------------------------------------------


def test_jsonl_happy_path_detected_from_content():
    data = _jsonl(
        {"text": "great", "label": "pos"}, {"Label": 0, "TEXT": "awful"}, {"text": "ok", "label": 1}
    )
    parsed = _classify(data)
    assert parsed.format == "jsonl"
    assert parsed.rows == (("great", "pos"), ("awful", "0"), ("ok", "1"))
    assert parsed.labels == ("0", "1", "pos")
    assert parsed.rejected == ()


def test_format_comes_from_the_filename_or_argument():
    data = _jsonl({"text": "a", "label": "x"}, {"text": "b", "label": "y"})
    assert _classify(data, filename="Data.NDJSON").format == "jsonl"
    assert _classify(_csv(*GOOD), filename="upload.CSV").format == "csv"
    with pytest.raises(DatasetError, match="missing required column 'text'"):
        _classify(data, fmt="csv")


def test_malformed_jsonl_lines_are_rejected_and_the_rest_kept():
    lines = [
        json.dumps({"text": "good", "label": "pos"}),
        '{"text": "broken", "label": ',
        json.dumps(["not", "an", "object"]),
        json.dumps({"text": "x", "label": "neg", "extra": 1}),
        json.dumps({"text": ["list"], "label": "neg"}),
        "[" * 100_000,
        "",
        json.dumps({"text": "also good", "label": "neg"}),
    ]
    parsed = _classify("\n".join(lines).encode())
    assert parsed.rows == (("good", "pos"), ("also good", "neg"))
    assert [(row.line, row.reason) for row in parsed.rejected] == [(n, "malformed") for n in range(2, 7)]
    details = [row.detail for row in parsed.rejected]
    assert details[0].startswith("invalid JSON: Expecting value (column")
    assert details[1] == "expected a JSON object, got list"
    assert details[2] == "expected fields text, label; found extra, label, text"
    assert details[3] == "field 'text' must be a string, got list"
    assert details[4].startswith("invalid JSON")


def test_jsonl_first_object_with_wrong_fields_is_a_file_error():
    with pytest.raises(DatasetError, match="^missing required field 'label'; found fields: text, lbl$"):
        _classify(_jsonl({"text": "a", "lbl": "x"}, {"text": "b", "label": "y"}))


def test_jsonl_bad_encoding_and_huge_line_reject_only_their_lines():
    good = _jsonl({"text": "a", "label": "x"})
    bad = b'{"text": "caf\xe9", "label": "y"}\n'
    huge = b'{"text": "' + b"z" * 10_000_000 + b'", "label": "y"}\n'
    parsed = _classify(good + bad + huge + _jsonl({"text": "b", "label": "y"}))
    assert parsed.rows == (("a", "x"), ("b", "y"))
    assert parsed.rejected == (
        RejectedRow(line=2, reason="bad_encoding", detail="invalid UTF-8 at byte 14 of the line"),
        RejectedRow(line=3, reason="line_too_long", detail="line is 10000027 bytes; the limit is 1000000"),
    )


# --- pairs -------------------------------------------------------------------------------------------


def test_pairs_task_from_csv_and_jsonl():
    csv_data = _csv("query,positive", "reset password,How to reset it", "reset password,Another answer")
    jsonl_data = _jsonl(
        {"query": "reset password", "positive": "How to reset it"},
        {"query": "Reset  Password", "positive": "how to reset it"},
        {"query": "refund", "positive": ""},
        {"query": "refund", "positive": "Refunds take five days"},
    )
    parsed = parse_dataset(data=csv_data, task="pairs")
    assert parsed.rows == (("reset password", "How to reset it"), ("reset password", "Another answer"))
    assert parsed.labels == ()
    parsed = parse_dataset(data=jsonl_data, task="pairs", filename="pairs.jsonl")
    assert parsed.rows == (("reset password", "How to reset it"), ("refund", "Refunds take five days"))
    assert parsed.rejected == (
        RejectedRow(line=2, reason="duplicate", detail="same query and positive as line 1"),
        RejectedRow(line=3, reason="empty_text", detail="column 'positive' is empty"),
    )


def test_pairs_with_classification_columns_is_refused():
    with pytest.raises(DatasetError, match="missing required column 'query'; found columns: text, label"):
        parse_dataset(data=_csv(*GOOD), task="pairs")


# --- PII ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "found"),
    [
        ("mail john.doe+x@mail.example.co.uk now", "mail [EMAIL] now", [("email", 1)]),
        ("a@b.io, c.d@e-f.com", "[EMAIL], [EMAIL]", [("email", 2)]),
        ("call +44 20 7946 0958 today", "call [PHONE] today", [("phone", 1)]),
        ("ring +31 (0)6 1234 5678", "ring [PHONE]", [("phone", 1)]),
        ("or 0044 20 7946 0958", "or [PHONE]", [("phone", 1)]),
        ("home 020 7946 0958, mobile 06-12345678", "home [PHONE], mobile [PHONE]", [("phone", 2)]),
        ("(555) 123-4567 or 555.123.4567 or 1-800-555-0199", "[PHONE] or [PHONE] or [PHONE]", [("phone", 3)]),
        ("card 4111 1111 1111 1111 exp", "card [CARD] exp", [("card", 1)]),
        ("card 4111-1111-1111-1111", "card [CARD]", [("card", 1)]),
        ("amex 378282246310005", "amex [CARD]", [("card", 1)]),
        ("iban GB82 WEST 1234 5698 7654 32.", "iban [IBAN].", [("iban", 1)]),
        ("iban DE89370400440532013000", "iban [IBAN]", [("iban", 1)]),
        (
            "me@x.org, +1 415 555 2671, 4111111111111111, GB82WEST12345698765432",
            "[EMAIL], [PHONE], [CARD], [IBAN]",
            [("email", 1), ("iban", 1), ("card", 1), ("phone", 1)],
        ),
    ],
)
def test_scrub_text_replaces_pii(text, expected, found):
    assert scrub_text(text) == (expected, found)


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails Luhn",  # 16 digits, Luhn-invalid
        "iban GB83 WEST 1234 5698 7654 32 has a bad check",  # mod-97 invalid
        "paid 1,234,567.89 or 1.234.567 or 3 450 000 EUR",
        "on 2024-01-15, 15.01.2024 and 01-02-2024 12:30",
        "order #123456789, order 12345678, invoice 20240115",
        "room 101, version 1.2.3, qty 1234567, 555-1234",
        "user at example dot com, @handle, a@b",
    ],
)
def test_scrub_text_leaves_ordinary_numbers_and_text_alone(text):
    assert scrub_text(text) == (text, [])


def test_luhn_and_iban_checks():
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("4111 1111 1111 1111")
    assert not luhn_valid("")
    assert not luhn_valid("\u00b2\u0664")  # unicode digits are not card digits
    assert iban_valid("GB82 WEST 1234 5698 7654 32")
    assert iban_valid("gb82west12345698765432")
    assert not iban_valid("GB83 WEST 1234 5698 7654 32")
    assert not iban_valid("GB82 WEST")
    assert not iban_valid("1282WEST12345698765432")


def test_parse_scrubs_before_deduplicating_and_reports_scrubs():
    data = _csv(
        "text,label",
        "contact me at ann@example.com please,pos",
        "contact me at bob@example.org please,pos",
        '"call 020 7946 0958 or +44 20 7946 0000, pay 4111 1111 1111 1111",neg',
    )
    parsed = _classify(data)
    assert parsed.rows == (
        ("contact me at [EMAIL] please", "pos"),
        ("call [PHONE] or [PHONE], pay [CARD]", "neg"),
    )
    assert parsed.rejected == (RejectedRow(line=3, reason="duplicate", detail="same text as line 2"),)
    assert parsed.scrubbed == (
        Scrub(line=2, column="text", kind="email", count=1),
        Scrub(line=4, column="text", kind="card", count=1),
        Scrub(line=4, column="text", kind="phone", count=2),
    )


def test_pairs_scrub_both_columns_but_labels_are_never_scrubbed():
    parsed = parse_dataset(data=_csv("query,positive", "mail a@b.com,write to c@d.com", "x,y"), task="pairs")
    assert parsed.rows[0] == ("mail [EMAIL]", "write to [EMAIL]")
    assert [(s.column, s.kind) for s in parsed.scrubbed] == [("query", "email"), ("positive", "email")]
    parsed = _classify(_csv("text,label", "a,ops@corp.com", "b,neg"))
    assert parsed.labels == ("neg", "ops@corp.com")


# --- fingerprint ---------------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_order_independent():
    rows = [("a", "x"), ("b", "y")]
    fingerprint = fingerprint_rows(rows)
    assert fingerprint == fingerprint_rows(list(reversed(rows)))
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0
    assert fingerprint != fingerprint_rows([("a", "x"), ("b", "z")])
    assert fingerprint != fingerprint_rows([("a", "x")])
    assert fingerprint_rows([("a,b", "c")]) != fingerprint_rows([("a", "b,c")])


def test_parse_fingerprint_follows_the_accepted_rows():
    first = _classify(_csv("text,label", "a,x", "b,y"))
    reordered = _classify(_jsonl({"text": "b", "label": "y"}, {"text": " a ", "label": "x"}))
    assert first.fingerprint == reordered.fingerprint == fingerprint_rows(first.rows)
    assert _classify(_csv("text,label", "a,x", "b,y")).fingerprint == first.fingerprint
    assert _classify(_csv("text,label", "a,x", "b,z")).fingerprint != first.fingerprint


# --- split -----------------------------------------------------------------------------------------------


def _labelled(counts: dict[str, int]) -> list[tuple[str, str]]:
    return [(f"{label} example {i}", label) for label, n in counts.items() for i in range(n)]


def test_stratified_split_keeps_label_proportions():
    rows = _labelled({"a": 100, "b": 50, "c": 20})
    split = stratified_split(rows=rows)
    by_part = {
        name: Counter(label for _, label in part)
        for name, part in zip(
            ("train", "validation", "test"), (split.train, split.validation, split.test), strict=True
        )
    }
    assert by_part["validation"] == {"a": 10, "b": 5, "c": 2}
    assert by_part["test"] == {"a": 10, "b": 5, "c": 2}
    assert by_part["train"] == {"a": 80, "b": 40, "c": 16}
    assert sorted(split.train + split.validation + split.test) == sorted(rows)


def test_split_is_deterministic_for_a_seed_and_independent_of_row_order():
    rows = _labelled({"a": 40, "b": 40})
    first = stratified_split(rows=rows, seed=7)
    assert stratified_split(rows=list(reversed(rows)), seed=7) == first
    assert stratified_split(rows=rows, seed=8).validation != first.validation


def test_tiny_labels_stay_in_train():
    split = stratified_split(rows=_labelled({"big": 30, "one": 1, "two": 2, "four": 4}))
    assert Counter(label for _, label in split.train) == {"big": 24, "one": 1, "two": 2, "four": 4}
    five = stratified_split(rows=_labelled({"five": 5}))
    assert (len(five.train), len(five.validation), len(five.test)) == (3, 1, 1)
    two = stratified_split(rows=_labelled({"two": 2}), validation=0.5, test=0.4)
    assert (len(two.train), len(two.validation), len(two.test)) == (1, 1, 0)


def test_pairs_split_without_stratification():
    rows = [(f"query {i}", f"answer {i}") for i in range(50)]
    split = stratified_split(rows=rows, stratify=False, validation=0.2, test=0.1)
    assert (len(split.train), len(split.validation), len(split.test)) == (35, 10, 5)


@pytest.mark.parametrize(("validation", "test"), [(-0.1, 0.1), (0.5, 0.5), (0.9, 0.2)])
def test_split_rejects_impossible_fractions(validation, test):
    with pytest.raises(ValueError, match="sum to less than 1"):
        stratified_split(rows=_labelled({"a": 10}), validation=validation, test=test)


# --- report ------------------------------------------------------------------------------------------


def test_report_csv_lists_rejections_and_scrubs_by_line():
    data = _csv(
        "text,label", "write to a@b.com,pos", "b,", "write to c@d.com,pos", "=HYPERLINK(1),x", "ok,neg"
    )
    parsed = _classify(data, allowed_labels={"pos", "neg"})
    report = report_csv(parsed)
    assert report.splitlines()[0] == "line,status,reason,detail"
    assert list(csv.reader(io.StringIO(report)))[1:] == [
        ["2", "scrubbed", "email", "1 email replaced in column 'text'"],
        ["3", "rejected", "empty_label", "column 'label' is empty"],
        ["4", "rejected", "duplicate", "same text as line 2"],
        ["5", "rejected", "unknown_label", "label 'x' is not one of the allowed labels"],
    ]


def test_report_csv_neutralises_spreadsheet_formulas():
    parsed = replace(
        _classify(_csv(*GOOD)), rejected=(RejectedRow(line=9, reason="malformed", detail="=1+1"),)
    )
    assert report_csv(parsed).splitlines()[1] == "9,rejected,malformed,'=1+1"


def test_report_csv_for_a_clean_file_has_only_the_header():
    assert report_csv(_classify(_csv(*GOOD))) == "line,status,reason,detail\r\n"
