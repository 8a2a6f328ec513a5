"""Property tests: whatever a phone sends, the answer is a decision or a clear 4xx, never a 500."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gis.errors import InvalidCoordinates
from gis.location import check_lonlat

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-200, max_value=200),
    st.floats(min_value=104.5, max_value=106.5),
    st.integers(min_value=-1000, max_value=1000),
)
junk = st.one_of(
    st.none(), st.text(max_size=20), st.booleans(), st.lists(st.integers(), max_size=3)
)


@given(lon=st.one_of(numbers, junk), lat=st.one_of(numbers, junk))
def test_check_lonlat_accepts_exactly_the_valid_range(lon, lat):
    try:
        x, y = check_lonlat(lon, lat)
    except InvalidCoordinates as exc:
        assert exc.message and exc.detail
        return
    assert math.isfinite(x) and math.isfinite(y) and abs(x) <= 180 and abs(y) <= 90


geojson_point = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["Point", "point", "LineString", 7]),
        "coordinates": st.one_of(st.lists(numbers, max_size=4), junk),
    }
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "lon": st.one_of(numbers, junk),
        "lat": st.one_of(numbers, junk),
        "location": st.one_of(geojson_point, junk),
        "crs": st.one_of(st.sampled_from(["wgs84", "gcj02", "bd09", "cgcs2000", "GCJ-02"]), junk),
        "category": st.one_of(st.sampled_from(["theft", "land_dispute", "fire"]), junk),
        "severity": st.one_of(st.sampled_from(["red", "blue"]), junk),
        "occurred_at": st.one_of(st.sampled_from(["2026-11-27T08:00:00+08:00", "yesterday"]), junk),
        "parties_sides": st.one_of(
            st.lists(st.sampled_from(["510904", "500152", "1"]), max_size=3), junk
        ),
        "extent": st.one_of(geojson_point, junk),
    },
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
def test_route_answers_any_body_with_a_decision_or_a_clear_4xx(client, body):
    r = client.post("/api/v1/route", json=body)
    assert r.status_code < 500, (body, r.text)
    if r.status_code != 200:
        err = r.json()
        assert set(err) == {"code", "message", "detail"} and err["code"] and err["message"]
    else:
        assert r.json()["side"] in ("510904", "500152")
