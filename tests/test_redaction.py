"""One redaction rule for every public surface: the OGC incidents feed and Open311 publish the
same fields with the same values, and neither publishes anything private."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from gis import redaction
from tests.geo import ANJU, TONGNAN, point_inside

SECRET = "张三在村口"


def _report(client: Any, side: str, metres: int, category: str, fraction: float) -> dict[str, Any]:
    lon, lat = point_inside(side, metres, fraction)
    r = client.post(
        "/api/v1/incidents",
        json={
            "lon": lon,
            "lat": lat,
            "category": category,
            "description": f"{SECRET} {category}",
            "reporter": {"name": "R. Porter", "phone": "000-1"},
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        try:
            return datetime.fromisoformat(a) == datetime.fromisoformat(b)
        except ValueError:
            return a == b
    if isinstance(a, float | int) and isinstance(b, float | int):
        return a == pytest.approx(b)
    return bool(a == b)


@pytest.mark.parametrize(
    ("side", "metres", "category", "fraction"),
    [(ANJU, 300, "land_dispute", 0.4), (TONGNAN, 800, "theft", 0.35), (ANJU, 300, "drugs", 0.45)],
)
def test_open311_and_the_ogc_feed_publish_one_view(
    client, catalogue, side, metres, category, fraction
):
    case = _report(client, side, metres, category, fraction)
    assert case["teams"] or case["contacts"]  # there is something private to keep
    ogc = client.get(f"/ogc/collections/incidents/items/{case['id']}")
    assert ogc.status_code == 200, ogc.text
    feature = ogc.json()
    [item] = client.get(f"/open311/v2/requests/{case['code']}.json").json()
    extension = item["jointgrid"]
    props = feature["properties"]

    assert set(props) == set(redaction.PUBLIC_FIELDS) | set(redaction.PUBLIC_LINKS)
    assert set(redaction.PUBLIC_FIELDS) <= set(extension)
    for name in redaction.PUBLIC_FIELDS:
        assert _same(props[name], extension[name]), (name, props[name], extension[name])
    assert (item["long"], item["lat"]) == pytest.approx(tuple(feature["geometry"]["coordinates"]))
    sensitive = category in catalogue.sensitive_categories
    if sensitive:
        assert props["distance_to_border_m"] is None
        assert feature["geometry"]["coordinates"] != pytest.approx(case["location"]["coordinates"])

    private = [
        SECRET,
        "R. Porter",
        *[t["name"] for t in case["teams"]],
        *[c["name"] for c in case["contacts"]],
        *[c.get("phone") for c in case["contacts"] if c.get("phone")],
    ]
    for text in (
        json.dumps(feature, ensure_ascii=False),
        json.dumps(item, ensure_ascii=False),
        client.get("/open311/v2/requests.json").text,
    ):
        for secret in private:
            assert secret not in text, secret
        assert "trace" not in text


def test_the_feed_sql_and_the_views_read_one_definition():
    from layers import incidents

    assert incidents.SPEC.public == redaction.PUBLIC_FIELDS
    assert not set(incidents.SPEC.public) & set(redaction.PRIVATE_FIELDS)
    for name in ("description", "teams", "contacts", "routing", "reporter", "merged_into"):
        assert name not in redaction.PUBLIC_FIELDS
