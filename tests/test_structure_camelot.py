import pytest

from segue.structure.camelot import (
    camelot,
    camelot_neighbours,
    key_name,
    keys_compatible,
    parse_camelot,
)


def test_reference_keys_have_their_wheel_codes() -> None:
    assert camelot(0, "major") == "8B"
    assert camelot(9, "minor") == "8A"
    assert camelot(6, "minor") == "11A"
    assert camelot(11, "major") == "1B"
    assert camelot(8, "minor") == "1A"


def test_every_key_round_trips_through_its_code() -> None:
    for tonic in range(12):
        for mode in ("major", "minor"):
            assert parse_camelot(camelot(tonic, mode)) == (tonic, mode)


def test_neighbours_are_same_key_adjacent_hours_and_relative_key() -> None:
    assert camelot_neighbours("8B") == ("8B", "9B", "7B", "8A")
    assert camelot_neighbours("12A") == ("12A", "1A", "11A", "12B")
    assert camelot_neighbours("1b") == ("1B", "2B", "12B", "1A")


def test_compatibility_is_symmetric_and_excludes_distant_keys() -> None:
    assert keys_compatible("8A", "9A") and keys_compatible("9A", "8A")
    assert keys_compatible("5B", "5A")
    assert not keys_compatible("8B", "10B")
    assert not keys_compatible("8B", "9A")


def test_key_names_use_common_spellings() -> None:
    assert key_name(6, "minor") == "F# minor"
    assert key_name(3, "major") == "Eb major"


@pytest.mark.parametrize("code", ["", "0A", "13B", "8C", "B8", "8"])
def test_malformed_codes_are_rejected(code: str) -> None:
    with pytest.raises(ValueError):
        parse_camelot(code)


def test_out_of_range_tonic_is_rejected() -> None:
    with pytest.raises(ValueError):
        camelot(12, "major")
