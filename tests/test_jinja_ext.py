"""Unit tests of the Jinja filters the templates use to write numbers from the standards
the way a person would."""

from __future__ import annotations

import pytest

from extensions.jinja_ext import env_duration, go_duration

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    ("ms", "expr"),
    [
        (0, "0"),
        (1, "time.Millisecond"),
        (250, "250 * time.Millisecond"),
        (1000, "time.Second"),
        (1500, "1500 * time.Millisecond"),
        (2000, "2 * time.Second"),
        (30_000, "30 * time.Second"),
        (60_000, "time.Minute"),
        (90_000, "90 * time.Second"),
        (180_000, "3 * time.Minute"),
        (3_600_000, "time.Hour"),
        (7_200_000, "2 * time.Hour"),
    ],
)
def test_go_duration(ms, expr):
    assert go_duration(ms) == expr


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (10, "10ms"),
        (250, "250ms"),
        (1000, "1s"),
        (1250, "1.25s"),
        (1500, "1.5s"),
        (2000, "2s"),
        (10_200, "10.2s"),
        (20_000, "20s"),
        (60_000, "1m"),
        (90_000, "1m30s"),
        (3_600_000, "1h"),
        (3_661_001, "1h1m1.001s"),
    ],
)
def test_env_duration(ms, text):
    assert env_duration(ms) == text


def _parse_go_duration(s: str) -> int:
    """Milliseconds of a time.ParseDuration string (the units env_duration writes)."""
    import re

    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(ms|h|m|s)", s):
        total += float(number) * {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}[unit]
    return round(total)


@pytest.mark.parametrize("ms", [0, 1, 999, 1000, 1001, 59_999, 60_000, 61_500, 86_400_000])
def test_env_duration_round_trips(ms):
    assert _parse_go_duration(env_duration(ms)) == ms


@pytest.mark.parametrize("bad", [-1, 1.5, "100", None, True])
def test_durations_refuse_what_is_not_whole_milliseconds(bad):
    with pytest.raises(ValueError):
        go_duration(bad)
    with pytest.raises(ValueError):
        env_duration(bad)
