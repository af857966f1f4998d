"""Range requests for clip files: one byte range, or a 416 the app can answer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segue.studio.ranges import ByteRange, RangeNotSatisfiable, parse_range

SIZE = 1000


@pytest.mark.parametrize("header", [None, "", "   "])
def test_no_range_asks_for_the_whole_file(header: str | None) -> None:
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=0-499", ByteRange(0, 499)),
    ("bytes=500-999", ByteRange(500, 999)),
    ("bytes=0-0", ByteRange(0, 0)),
    ("bytes=999-999", ByteRange(999, 999)),
    ("bytes=900-5000", ByteRange(900, 999)),      # the end is clipped to the file
    ("bytes=0-", ByteRange(0, 999)),              # what browsers send first for <audio>
    ("bytes=700-", ByteRange(700, 999)),
    ("bytes=-100", ByteRange(900, 999)),          # the last 100 bytes
    ("bytes=-5000", ByteRange(0, 999)),           # a suffix longer than the file: all of it
    ("Bytes = 10-19", ByteRange(10, 19)),         # the unit is case-insensitive
])  # fmt: skip
def test_one_range_is_served_as_asked(header: str, expected: ByteRange) -> None:
    assert parse_range(header, SIZE) == expected


def test_a_range_knows_its_length_and_content_range() -> None:
    byte_range = ByteRange(10, 19)
    assert byte_range.length == 10
    assert byte_range.content_range(SIZE) == "bytes 10-19/1000"


@pytest.mark.parametrize("header", [
    "bytes=1000-",          # starts at the end
    "bytes=1000-2000",
    "bytes=5-4",            # ends before it starts
    "bytes=-0",             # an empty suffix
    "bytes=-",
    "bytes=0-1,5-6",        # several ranges
    "bytes=0-1, 5-6",
    "bytes=a-b",
    "bytes=+1-2",
    "bytes=1--2",
    "bytes=١-٢",            # digits, but not ASCII ones
    "bytes 0-1",
    "items=0-1",            # another unit
    "=0-1",
    "bytes=" + "9" * 40 + "-",
])  # fmt: skip
def test_anything_else_is_not_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, SIZE)


def test_no_range_of_an_empty_file_is_satisfiable() -> None:
    assert parse_range(None, 0) is None
    for header in ("bytes=0-", "bytes=-1", "bytes=0-0"):
        with pytest.raises(RangeNotSatisfiable):
            parse_range(header, 0)


def test_not_satisfiable_is_a_value_error() -> None:
    assert issubclass(RangeNotSatisfiable, ValueError)


numbers = st.integers(min_value=0, max_value=10**12)
specs = st.one_of(
    st.tuples(numbers, numbers).map(lambda ab: f"{ab[0]}-{ab[1]}"),
    numbers.map(lambda a: f"{a}-"),
    numbers.map(lambda n: f"-{n}"),
)


@given(size=st.integers(min_value=0, max_value=10**9), spec=specs)
def test_every_served_range_lies_inside_the_file(size: int, spec: str) -> None:
    try:
        byte_range = parse_range(f"bytes={spec}", size)
    except RangeNotSatisfiable:
        return
    assert byte_range is not None
    assert 0 <= byte_range.start <= byte_range.end < size
    assert byte_range.length >= 1


@given(size=st.integers(min_value=1, max_value=10**9), data=st.data())
def test_a_range_inside_the_file_is_served_exactly(size: int, data: st.DataObject) -> None:
    start = data.draw(st.integers(min_value=0, max_value=size - 1))
    end = data.draw(st.integers(min_value=start, max_value=size - 1))
    assert parse_range(f"bytes={start}-{end}", size) == ByteRange(start, end)
    assert parse_range(f"bytes={start}-", size) == ByteRange(start, size - 1)
    assert parse_range(f"bytes=-{end - start + 1}", size) == ByteRange(
        size - (end - start + 1), size - 1)


@given(header=st.text(max_size=40), size=st.integers(min_value=0, max_value=10**6))
def test_any_header_is_served_or_refused_never_an_other_error(header: str, size: int) -> None:
    try:
        byte_range = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    if byte_range is not None:
        assert 0 <= byte_range.start <= byte_range.end < size
