"""Reading tracker protocols and the rules every fix meets (gis.fixes, pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gis import fixes as fx
from gis.errors import InvalidInput

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_times_as_traccar_reads_them():
    assert fx.parse_time("1764576000", now=NOW) == datetime(2025, 12, 1, 8, 0, tzinfo=UTC)
    assert fx.parse_time("1764576000000", now=NOW) == datetime(2025, 12, 1, 8, 0, tzinfo=UTC)
    assert fx.parse_time("2026-12-01T16:00:00+08:00", now=NOW) == NOW
    assert fx.parse_time("2026-12-01T08:00:00.000Z", now=NOW) == NOW
    assert fx.parse_time("2026-12-01 08:00:00", now=NOW) == NOW  # no zone: UTC
    assert fx.parse_time(None, now=NOW) == NOW
    with pytest.raises(InvalidInput):
        fx.parse_time("yesterday", now=NOW)


def test_osmand_speed_is_knots_and_zero_accuracy_is_unknown():
    f = fx.osmand_query(
        {"id": "1", "lat": "30.2", "lon": "105.6", "speed": "10.0", "accuracy": "0.0"},
        crs="wgs84",
        now=NOW,
    )
    assert f is not None and f.speed_mps == pytest.approx(5.14444, rel=1e-5)
    assert f.accuracy_m is None
    assert fx.osmand_query({"id": "1"}, crs="wgs84", now=NOW) is None  # a heartbeat


def test_owntracks_speed_is_kmh():
    f = fx.owntracks(
        {"_type": "location", "lat": 30.2, "lon": 105.6, "tst": 1764576000, "vel": 36},
        crs="wgs84",
        now=NOW,
    )
    assert f.speed_mps == pytest.approx(10.0)


def test_flags_judge_speed_from_the_last_good_fix():
    rules = fx.Rules(retention=timedelta(days=90), max_speed_mps=10, max_accuracy_m=50)
    a = fx.Fix(lon=105.6, lat=30.2, time=NOW)
    far = fx.Fix(lon=105.7, lat=30.2, time=NOW + timedelta(seconds=30))  # ~9.6 km in 30 s
    back = fx.Fix(lon=105.6001, lat=30.2, time=NOW + timedelta(seconds=60))
    blur = fx.Fix(lon=105.6001, lat=30.2, time=NOW + timedelta(seconds=90), accuracy_m=80)
    out = fx.flag([back, far, blur], previous=a, rules=rules)
    assert [f.flags for f in out] == [("speed",), (), ("accuracy",)]


def test_refusals():
    rules = fx.Rules(retention=timedelta(days=90), bounds=(105.0, 29.0, 106.0, 31.0))
    ok = fx.Fix(lon=105.5, lat=30.0, time=NOW)
    assert fx.refusal(ok, now=NOW, rules=rules) is None
    assert (
        fx.refusal(
            fx.Fix(lon=105.5, lat=30.0, time=NOW + timedelta(minutes=10)), now=NOW, rules=rules
        )
        == "future"
    )
    assert (
        fx.refusal(fx.Fix(lon=105.5, lat=30.0, time=NOW - timedelta(days=91)), now=NOW, rules=rules)
        == "too_old"
    )
    assert (
        fx.refusal(fx.Fix(lon=116.4, lat=39.9, time=NOW), now=NOW, rules=rules)
        == "outside_service_area"
    )
    box = fx.expand_bounds((105.0, 30.0, 106.0, 31.0), 1000)
    assert box[1] == pytest.approx(30.0 - 1000 / 111_320)
