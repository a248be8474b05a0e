"""The import's email check: its fast path for plain addresses answers as email_validator does."""

from __future__ import annotations

import io
import itertools

from email_validator import EmailNotValidError, validate_email

from accounts.customer_csv import read_batch, records, valid_email

LOCAL_PARTS = [
    "anna", "Anna.Smith", "a", "a.b.c", "o'neil", "x+tag", "first_last", "a-b", "UPPER", "digits123",
    "a..b", ".anna", "anna.", "an na", 'qu"ote', '"quoted"', '"with space"', "ümlaut", "a" * 64, "a" * 65,
    "#!$%&*/=?^`{|}~", "a@b", "", "(comment)anna", "tab\tx", "Postmaster", "ABUSE", "Info", "Webmaster",
]  # fmt: skip
DOMAINS = [
    "example.com", "Example.COM", "b.c", "sub.domain.example.org", "xn--bcher-kva.de", "bücher.de", "localhost",
    "x.test", "x.local", "x.invalid", "x.example", "-x.com", "x-.com", "x..com", ".x.com", "x.com.", "x.123",
    "[127.0.0.1]", "1.2.3.4", "a_b.com", "a" * 63 + ".com", "a" * 64 + ".com", "x.c0m", "", "xn--.com",
    ("a" * 60 + ".") * 4 + "com",
]  # fmt: skip


def expected(value: str) -> str | None:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        return None


def test_valid_email_answers_as_email_validator() -> None:
    values = [f"{local}@{domain}" for local, domain in itertools.product(LOCAL_PARTS, DOMAINS)]
    values += ["plain", "@", "a@@b.com", "a@b.com" + "m" * 250]
    differ = {value: (valid_email(value), expected(value)) for value in values if valid_email(value) != expected(value)}
    assert not differ
    assert sum(expected(value) is not None for value in values) > 100  # the corpus holds valid addresses too


def test_the_fast_path_does_not_cache_an_answer_for_another_local_part() -> None:
    assert valid_email("good@example.com") == "good@example.com"
    assert valid_email("bad..one@example.com") is None
    assert valid_email("Good@EXAMPLE.com") == "Good@example.com"


def test_a_batch_parsed_in_one_go_has_the_records_and_lines_of_the_record_by_record_reader() -> None:
    text = (
        'DE--1,"Anna, Maria",x\r\n'
        '"DE--2","line one\r\nline two",y\r\n'
        "\r\n"
        'DE--3,"quote ""q""",z\n'
        'DE--4,"three\nline\nfield",w\r\n'
        "DE--5,ümlaut,v"
    )
    data = text.encode()
    by_record = [(r.line, r.fields) for r in records(io.BytesIO(data), ",", start_line=7)]
    assert [(r.line, r.fields) for r in read_batch(data, ",", 7)] == by_record
    assert [line for line, _ in by_record] == [7, 8, 11, 12, 15]


def test_a_lone_carriage_return_does_not_shift_the_lines_of_a_batch() -> None:
    """csv ends a line at a lone \r as well; scan (and every line number it keyed) counts \n only."""
    data = b'DE--1,"Acme\rGmbH",x\r\nDE--2,b,y\r\nDE--3,c\rz,w\r\nDE--4,d,v\r\n'
    by_record = [(r.line, r.fields) for r in records(io.BytesIO(data), ",", start_line=2)]
    assert [(r.line, r.fields) for r in read_batch(data, ",", 2)] == by_record
    assert [line for line, _ in by_record] == [2, 3, 4, 5]
