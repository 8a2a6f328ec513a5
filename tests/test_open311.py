"""Open311 GeoReport v2 (JSON) on real PostGIS: services, reporting through the case engine,
searching, and the GeoReport error body for everything refused."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from api import errors as api_errors
from api.usecases import policy
from gis import errors
from layers import errors as storage_errors
from tests.geo import ANJU, TONGNAN, point_inside

V2 = "/open311/v2"

REPORTER = {
    "first_name": "演示-赵",
    "last_name": "Demo Zhao 9911",
    "phone": "000-9911-4477",
    "email": "zhao9911@example.org",
    "device_id": "device-9911-secret",
    "account_id": "account-9911",
}


def post(client, form, **headers):  # type: ignore[no-untyped-def]
    return client.post(f"{V2}/requests.json", data=form, headers=headers)


def report(client, side=ANJU, metres=300, code="land_dispute", fraction=0.35, **extra):  # type: ignore[no-untyped-def]
    lon, lat = point_inside(side, metres, fraction)
    r = post(client, {"lat": lat, "long": lon, "service_code": code, **extra})
    assert r.status_code == 201, r.text
    [answer] = r.json()
    return answer, (lon, lat)


def one(client, request_id):  # type: ignore[no-untyped-def]
    r = client.get(f"{V2}/requests/{request_id}.json")
    assert r.status_code == 200, r.text
    [item] = r.json()
    return item


def assert_error(r, status, *words):  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body, list) and len(body) == 1, body
    assert body[0]["code"] == status and isinstance(body[0]["description"], str)
    for w in words:
        assert w in body[0]["description"], body[0]["description"]
    return body[0]


# -- services -------------------------------------------------------------------------------


def test_services_are_the_catalogue(client, catalogue):
    r = client.get(f"{V2}/services.json")
    assert r.status_code == 200
    services = r.json()
    assert [s["service_code"] for s in services] == list(catalogue.categories)
    theft = next(s for s in services if s["service_code"] == "theft")
    assert theft["service_name"] == "盗窃 theft"
    assert theft["metadata"] is False and theft["type"] == "realtime"
    assert theft["group"] == "治安 public security"
    assert "盗窃" in theft["keywords"] and "联防" in theft["description"]
    for s in services:
        assert set(s) >= {
            "service_code",
            "service_name",
            "description",
            "metadata",
            "type",
            "keywords",
            "group",
        }


def test_service_definition(client):
    r = client.get(f"{V2}/services/river_pollution.json")
    assert r.status_code == 200
    assert r.json() == {"service_code": "river_pollution", "attributes": []}
    err = assert_error(client.get(f"{V2}/services/potholes.json"), 404, "potholes")
    assert "theft" in err["jointgrid"]["detail"]["valid"]


def test_only_json_is_served(client):
    for path in ("services.xml", "services/theft.xml", "requests.xml", "requests/JG1.xml"):
        assert_error(client.get(f"{V2}/{path}"), 400, "JSON only")


# -- reporting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "metres", "code"),
    [(ANJU, 300, "land_dispute"), (TONGNAN, 800, "theft"), (ANJU, 2500, "fire")],
)
def test_a_post_is_routed_exactly_like_the_json_api(client, catalogue, side, metres, code):
    lon, lat = point_inside(side, metres, 0.35)
    decision = client.post("/api/v1/route", json={"lon": lon, "lat": lat, "category": code})
    assert decision.status_code == 200, decision.text
    d = decision.json()

    r = post(client, {"lat": lat, "long": lon, "service_code": code, "description": "田埂争议"})
    assert r.status_code == 201, r.text
    [answer] = r.json()
    assert set(answer) == {"service_request_id", "service_notice", "account_id"}
    assert answer["service_request_id"].startswith("JG")
    assert r.headers["location"] == f"{V2}/requests/{answer['service_request_id']}.json"

    item = one(client, answer["service_request_id"])
    jg = item["jointgrid"]
    assert jg["mechanism"] == d["mechanism"]
    assert jg["lead_side"] == d["lead_side"]
    assert jg["sides"] == d["sides"]
    assert jg["reasons"] == d["cross_boundary_reasons"]
    if d["mechanism"] is None:
        assert item["agency_responsible"] == f"single side / lead {d['lead_side']}"
        assert "alone" in item["service_notice"]
    else:
        name = catalogue.mechanisms[d["mechanism"]].name
        assert item["agency_responsible"] == f"{d['mechanism']} {name} / lead {d['lead_side']}"
        assert d["mechanism"] in answer["service_notice"]
    assert item["service_code"] == code and item["status"] == "open"
    assert item["status_notes"].startswith("reported")
    assert item["description"] == ""  # private on every public surface (gis.redaction)
    assert item["lat"] == pytest.approx(lat, abs=1e-6)
    assert item["long"] == pytest.approx(lon, abs=1e-6)
    for field in ("requested_datetime", "updated_datetime", "expected_datetime"):
        assert datetime.fromisoformat(item[field]).tzinfo is not None
    assert "routing" not in jg and "teams" not in jg

    # The same case through the JSON API.
    case = client.get(f"/api/v1/incidents/{jg['id']}").json()
    assert case["code"] == item["service_request_id"] and case["mechanism"] == d["mechanism"]


def test_reporter_and_contacts_stay_private(client, conn):
    answer, _ = report(
        client, description="界桩被移动", media_url="http://example.org/p.jpg", **REPORTER
    )
    assert answer["account_id"] == REPORTER["account_id"]
    code = answer["service_request_id"]

    stored = conn.execute("SELECT reporter FROM incidents WHERE code = %s", (code,)).fetchone()
    rec = stored["reporter"]
    assert rec["name"] == "演示-赵 Demo Zhao 9911" and rec["phone"] == REPORTER["phone"]
    assert rec["email"] == REPORTER["email"] and rec["device_id"] == REPORTER["device_id"]
    assert rec["media_url"] == "http://example.org/p.jpg"

    case = client.get(f"/api/v1/incidents/{code}").json()
    phones = [c["phone"] for c in case["contacts"] if c.get("phone")]
    names = [c["name"] for c in case["contacts"] if c.get("name")]
    assert phones and names

    texts = [
        client.get(f"{V2}/requests/{code}.json").text,
        client.get(f"{V2}/requests.json", params={"service_request_id": code}).text,
        client.get(f"{V2}/requests.json", params={"service_code": "land_dispute"}).text,
    ]
    assert code in texts[2]
    for text in texts:
        decoded = json.dumps(json.loads(text), ensure_ascii=False)
        for secret in [*REPORTER.values(), *phones, *names, "example.org/p.jpg"]:
            assert secret not in decoded, secret


def test_no_description_is_published_sensitive_or_not(client):
    for code, text in (("drugs", "某某在出租屋内吸毒"), ("theft", "张三家的电动车被偷")):
        answer, _ = report(client, code=code, description=text)
        item = one(client, answer["service_request_id"])
        assert item["description"] == "" and item["jointgrid"]["description_withheld"] is True
        assert text not in json.dumps(item, ensure_ascii=False)


def test_idempotency_key_gives_one_request(client, conn):
    lon, lat = point_inside(ANJU, 400, 0.5)
    form = {"lat": lat, "long": lon, "service_code": "water_dispute", "description": "抢水"}
    key = {"Idempotency-Key": "open311-test-0001"}
    first = post(client, form, **key)
    again = post(client, form, **key)
    assert first.status_code == 201 and again.status_code == 200, again.text
    code = first.json()[0]["service_request_id"]
    assert again.json()[0]["service_request_id"] == code
    n = conn.execute(  # keys are kept per API key: "<key id>:<Idempotency-Key>"
        "SELECT count(*) AS n FROM incidents WHERE idempotency_key LIKE %s",
        ("%:" + key["Idempotency-Key"],),
    )
    assert n.fetchone()["n"] == 1
    assert_error(post(client, {**form, "description": "另一件事"}, **key), 409, "Idempotency-Key")


def test_api_key_field_authenticates_and_is_not_stored(client, conn, api_keys):
    token = api_keys["grid_worker:510904"]
    lon, lat = point_inside(ANJU, 300, 0.35)
    form = {"lat": lat, "long": lon, "service_code": "land_dispute", "api_key": token}
    r = client.post(f"{V2}/requests.json", data=form, headers={"Authorization": ""})
    assert r.status_code == 201, r.text
    code = r.json()[0]["service_request_id"]
    row = conn.execute(
        "SELECT i.reporter::text AS reporter, e.actor FROM incidents i "
        "JOIN incident_events e ON e.incident_id = i.id WHERE i.code = %s",
        (code,),
    ).fetchone()
    assert row["actor"]["via"] == "open311" and row["actor"]["role"] == "grid_worker"
    assert row["actor"]["key_id"] == token.split("_")[1]
    assert token.split("_", 2)[2] not in json.dumps(row, default=str)


def test_a_bad_or_missing_api_key_is_403_in_the_open311_shape(client):
    lon, lat = point_inside(ANJU, 300, 0.35)
    form = {"lat": lat, "long": lon, "service_code": "land_dispute"}
    no_key = client.post(f"{V2}/requests.json", data=form, headers={"Authorization": ""})
    assert_error(no_key, 403, "API key")
    bad = client.post(
        f"{V2}/requests.json", data={**form, "api_key": "jg_x_y"}, headers={"Authorization": ""}
    )
    assert_error(bad, 403)


# -- searching ------------------------------------------------------------------------------


def ids(r):  # type: ignore[no-untyped-def]
    assert r.status_code == 200, r.text
    return {i["service_request_id"] for i in r.json()}


def test_search_by_id_status_code_and_dates(client):
    a, _ = report(client, code="illegal_dumping", fraction=0.3)
    b, _ = report(client, code="illegal_dumping", fraction=0.4)
    c, _ = report(client, code="market_order", fraction=0.5)
    a_id, b_id, c_id = (x["service_request_id"] for x in (a, b, c))

    # ids: comma-separated, unknown ones skipped, other filters ignored
    got = ids(
        client.get(
            f"{V2}/requests.json",
            params={"service_request_id": f"{a_id}, {c_id},JG00000000-999999", "status": "closed"},
        )
    )
    assert got == {a_id, c_id}
    assert one(client, a["service_request_id"])["jointgrid"]["code"] == a_id
    uuid = one(client, a_id)["jointgrid"]["id"]
    assert one(client, uuid)["service_request_id"] == a_id  # the uuid is accepted too

    # service_code
    got = ids(client.get(f"{V2}/requests.json", params={"service_code": "illegal_dumping"}))
    assert {a_id, b_id} <= got and c_id not in got
    got = ids(
        client.get(f"{V2}/requests.json", params={"service_code": "illegal_dumping,market_order"})
    )
    assert {a_id, b_id, c_id} <= got

    # status: reject one (closed), keep the others open
    case = client.get(f"/api/v1/incidents/{b_id}").json()
    r = client.post(
        f"/api/v1/incidents/{case['id']}/transitions",
        json={"action": "reject", "side": case["lead_side"], "note": "not a real dumping site"},
    )
    assert r.status_code == 200, r.text
    closed = ids(client.get(f"{V2}/requests.json", params={"status": "closed"}))
    opened = ids(client.get(f"{V2}/requests.json", params={"status": "open"}))
    both = ids(client.get(f"{V2}/requests.json", params={"status": "open,closed"}))
    assert b_id in closed and b_id not in opened
    assert {a_id, c_id} <= opened and not {a_id, c_id} & closed
    assert {a_id, b_id, c_id} <= both
    rejected = one(client, b_id)
    assert rejected["status"] == "closed" and rejected["status_notes"].startswith("rejected")

    # dates: inclusive window around the time of the request
    t = datetime.fromisoformat(one(client, a_id)["requested_datetime"])

    def window(start, end):  # type: ignore[no-untyped-def]
        q = {"service_code": "illegal_dumping"}
        if start is not None:
            q["start_date"] = start.isoformat()
        if end is not None:
            q["end_date"] = end.isoformat()
        return ids(client.get(f"{V2}/requests.json", params=q))

    minute = timedelta(minutes=1)
    assert a_id in window(t - minute, t + minute)
    assert a_id in window(t - minute, None)
    assert a_id in window(None, t + minute)
    assert a_id in window(t.replace(microsecond=0), t + minute)
    assert a_id not in window(t + minute, t + 2 * minute)
    assert a_id not in window(None, t - minute)
    assert a_id not in window(t - 91 * timedelta(days=1), t - 90 * timedelta(days=1))


def test_a_merged_case_is_closed_as_a_duplicate(client):
    kept, _ = report(client, code="fight", fraction=0.45)
    merged, _ = report(client, code="fight", fraction=0.451)
    target = one(client, kept["service_request_id"])["jointgrid"]
    case = client.get(f"/api/v1/incidents/{merged['service_request_id']}").json()
    r = client.post(
        f"/api/v1/incidents/{case['id']}/transitions",
        json={"action": "merge", "side": case["lead_side"], "into": target["id"]},
    )
    assert r.status_code == 200, r.text
    item = one(client, merged["service_request_id"])
    assert item["status"] == "closed" and item["status_notes"].startswith("duplicate")
    assert "merged_into" not in item["jointgrid"]  # a link to another case is private
    assert one(client, target["id"])["service_request_id"] == kept["service_request_id"]


def test_the_default_window_is_the_last_90_days(client, conn):
    old, _ = report(client, code="rental_housing", fraction=0.3)
    new, _ = report(client, code="rental_housing", fraction=0.6)
    conn.execute(
        "UPDATE incidents SET reported_at = now() - interval '100 days' WHERE code = %s",
        (old["service_request_id"],),
    )
    got = ids(client.get(f"{V2}/requests.json", params={"service_code": "rental_housing"}))
    assert new["service_request_id"] in got and old["service_request_id"] not in got
    item = one(client, old["service_request_id"])
    t = datetime.fromisoformat(item["requested_datetime"])
    got = ids(
        client.get(
            f"{V2}/requests.json",
            params={"start_date": (t - timedelta(days=1)).isoformat()},
        )
    )
    assert old["service_request_id"] in got and new["service_request_id"] not in got


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "words"),
    [
        ({"service_code": "theft"}, ["lat and long are required"]),
        ({"service_code": "theft", "lat": "30.2"}, ["lat and long are required"]),
        ({"lat": "30.2", "long": "105.6"}, ["service_code is required"]),
        ({"lat": "30.2", "long": "105.6", "service_code": "potholes"}, ["unknown category"]),
        ({"lat": "95", "long": "200", "service_code": "theft"}, ["out of range"]),
        ({"lat": "105.6", "long": "30.2", "service_code": "theft"}, ["swapped"]),
        ({"lat": "NaN", "long": "105.6", "service_code": "theft"}, ["finite"]),
        ({"lat": "north", "long": "105.6", "service_code": "theft"}, ["numbers"]),
        ({"lat": "39.9", "long": "116.4", "service_code": "theft"}, ["outside"]),
        (
            {"lat": "30.2", "long": "105.6", "service_code": "theft", "description": "x" * 4001},
            ["description"],
        ),
        (
            {"lat": "30.2", "long": "105.6", "service_code": "theft", "phone": "1" * 51},
            ["phone"],
        ),
        ({"lat": "30.2", "long": "105.6", "service_code": "theft\x00"}, ["NUL"]),
    ],
)
def test_bad_reports_are_400_arrays(client, form, words):
    err = assert_error(post(client, form), 400, *words)
    assert err["jointgrid"]["code"]


def test_outside_the_service_area_names_our_code(client):
    r = post(client, {"lat": "39.9", "long": "116.4", "service_code": "theft"})
    assert assert_error(r, 400)["jointgrid"]["code"] == "outside_service_area"


def test_a_json_body_is_refused_with_a_pointer(client):
    r = client.post(
        f"{V2}/requests.json", json={"lat": 30.2, "long": 105.6, "service_code": "theft"}
    )
    assert_error(r, 400, "x-www-form-urlencoded")


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"start_date": "yesterday"}, ["start_date"]),
        ({"end_date": "2026-11-27T08:00:00"}, ["time zone"]),
        ({"start_date": "2026-11-27T08:00:00Z", "end_date": "2026-11-26T08:00:00Z"}, ["before"]),
        ({"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-11-26T00:00:00Z"}, ["90 days"]),
        ({"start_date": "9999-12-31T23:59:59+00:00"}, ["too far"]),
        ({"end_date": "0001-01-01T00:00:00+08:00"}, ["too far"]),
        ({"status": "pending"}, ["status"]),
        ({"service_code": "theft,potholes"}, ["potholes"]),
        ({"service_request_id": "a\x00b"}, ["NUL"]),
        ({"service_request_id": ",".join(f"JG{i}" for i in range(101))}, ["at most"]),
    ],
)
def test_bad_searches_are_400_arrays(client, query, words):
    assert_error(client.get(f"{V2}/requests.json", params=query), 400, *words)


def test_unknown_things_are_404_arrays(client):
    assert_error(client.get(f"{V2}/requests/JG20991231-999999.json"), 404, "JG20991231-999999")
    assert_error(client.get(f"{V2}/requests/no-such-uuid.json"), 404)
    assert_error(client.get(f"{V2}/nothing-here"), 404, "services.json")
    assert_error(client.get(f"{V2}/services"), 404)
    r = client.delete(f"{V2}/services.json")
    assert_error(r, 405, "GET")
    assert "GET" in r.headers["allow"]
    # The JSON API keeps its own error shape.
    r = client.get("/api/v1/incidents/JG20991231-999999")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (api_errors.Unauthenticated("send a key"), 403),  # GeoReport v2 has no 401
        (policy.Forbidden("not this key"), 403),
        (storage_errors.Unavailable("the database is not reachable"), 503),
        (errors.IdempotencyConflict("key reused"), 409),
        (errors.UnknownCategory("unknown category"), 400),
        (RuntimeError("a bug"), 500),
    ],
)
def test_error_statuses_in_the_georeport_shape(error, status):
    from starlette.requests import Request

    from api.routes.open311 import as_open311

    r = as_open311(error, Request({"type": "http", "method": "GET", "path": "/x", "headers": []}))
    body = json.loads(bytes(r.body))
    assert r.status_code == status and body[0]["code"] == status
    assert ("retry-after" in r.headers) == (status == 503)
    if status == 500:
        assert "a bug" not in body[0]["description"]


# -- junk never makes a 500 -----------------------------------------------------------------

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.floats(min_value=-200, max_value=200).map(str),
    st.text(max_size=12),
)
words = st.text(max_size=40)
# Forms that are mostly right (a point between the two districts' centres, a real code), so
# some become requests, and junk in every field.
plausible = st.fixed_dictionaries(
    {
        "lat": st.floats(min_value=30.2, max_value=30.35).map(str),
        "long": st.floats(min_value=105.55, max_value=105.7).map(str),
        "service_code": st.sampled_from(["theft", "fire", "land_dispute", "river_pollution"]),
    },
    optional={
        "description": st.text(max_size=50),
        "first_name": st.text(max_size=20),
        "phone": st.text(max_size=20),
        "email": words,
        "api_key": words,
    },
)
junk = st.fixed_dictionaries(
    {},
    optional={
        "lat": numbers,
        "long": numbers,
        "service_code": st.one_of(st.sampled_from(["theft", ""]), st.text(max_size=120)),
        "description": st.one_of(st.text(max_size=50), st.just("长" * 4001)),
        "api_key": words,
        "first_name": st.text(max_size=250),
        "last_name": words,
        "phone": st.text(max_size=60),
        "email": words,
        "device_id": words,
        "account_id": words,
        "address_string": words,
        "media_url": words,
        "attribute[x]": words,
    },
)
forms = st.one_of(plausible, junk, st.tuples(plausible, junk).map(lambda p: p[0] | p[1]))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(form=forms, key=st.one_of(st.none(), st.sampled_from(["k1", "k2"])))
def test_junk_forms_never_make_a_500(client, form, key):
    """Whatever a form holds, the answer is a request or a GeoReport error (409: a reused key)."""
    headers = {} if key is None else {"Idempotency-Key": key}
    r = post(client, {k: v for k, v in form.items() if v is not None}, **headers)
    event(f"status {r.status_code}")
    assert r.status_code in (200, 201, 400, 409), r.text
    body = r.json()
    assert isinstance(body, list) and len(body) == 1
    if r.status_code >= 400:
        assert body[0]["code"] == r.status_code and body[0]["description"]
    else:
        assert body[0]["service_request_id"].startswith("JG")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    query=st.fixed_dictionaries(
        {},
        optional={
            "service_request_id": st.text(max_size=40),
            "service_code": st.text(max_size=20),
            "start_date": st.one_of(
                st.text(max_size=30), st.datetimes(timezones=st.timezones()).map(str)
            ),
            "end_date": st.one_of(
                st.text(max_size=30), st.datetimes(timezones=st.timezones()).map(str)
            ),
            "status": st.one_of(
                st.sampled_from(["open", "closed", "OPEN", "open,closed"]), st.text(max_size=10)
            ),
        },
    )
)
def test_junk_searches_never_make_a_500(client, query):
    r = client.get(f"{V2}/requests.json", params=query)
    event(f"status {r.status_code}")
    assert r.status_code in (200, 400), r.text
    assert isinstance(r.json(), list)


def test_a_sensitive_case_is_published_at_its_grid_centroid(client, conn):
    answer, (lon, lat) = report(client, code="drugs", fraction=0.45)
    code = answer["service_request_id"]
    centre = conn.execute(
        "SELECT ST_X(ST_Centroid(g.geom)) AS x, ST_Y(ST_Centroid(g.geom)) AS y"
        " FROM incidents i JOIN grids g ON g.code = i.grid_code WHERE i.code = %s",
        (code,),
    ).fetchone()
    listed = [
        i for i in client.get(f"{V2}/requests.json").json() if i["service_request_id"] == code
    ]
    for item in (one(client, code), *listed):
        assert (item["long"], item["lat"]) == pytest.approx((centre["x"], centre["y"]), abs=1e-9)
        assert (item["long"], item["lat"]) != pytest.approx((lon, lat), abs=1e-6)
        assert item["jointgrid"]["distance_to_border_m"] is None
        assert "routing" not in item["jointgrid"]


def test_published_point_without_a_grid_is_the_cell_centre():
    from gis.redaction import published_point

    assert published_point(105.6234, 30.2871, None) == pytest.approx((105.625, 30.285))
    assert published_point(105.6234, 30.2871, (1.0, 2.0)) == (1.0, 2.0)
