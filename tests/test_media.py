"""Photos on cases, on real PostGIS: upload with a report or after, idempotency, refusals,
access, stripping checked on the served bytes, the audit trail and the stored files' hashes."""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from api import settings
from tests.conftest import bearer
from tests.geo import ANJU, TONGNAN, point_inside
from tests.mediagen import SERIAL, assert_stripped, encoded, jpeg, png_header


@pytest.fixture(autouse=True)
def media_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test stores its photos in a folder of its own."""
    monkeypatch.setenv("JOINTGRID_MEDIA_DIR", str(tmp_path / "media"))
    settings.media.cache_clear()
    yield tmp_path / "media"
    settings.media.cache_clear()


def limits(monkeypatch: pytest.MonkeyPatch, **values: int) -> None:
    for k, v in values.items():
        monkeypatch.setenv(f"JOINTGRID_MEDIA_{k.upper()}", str(v))
    settings.media.cache_clear()


def report_json(
    side: str = ANJU, category: str = "illegal_dumping", metres: float = 600, **extra: Any
) -> dict[str, Any]:
    lon, lat = point_inside(side, metres, 0.4)
    return {"lon": lon, "lat": lat, "category": category, **extra}


def send_report(
    client: Any,
    body: dict[str, Any],
    photos: list[bytes],
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    files = [("media", (f"IMG_{i}.jpg", p, "image/jpeg")) for i, p in enumerate(photos)]
    h = dict(headers or {})
    if key:
        h["Idempotency-Key"] = key
    return client.post(
        "/api/v1/incidents", data={"report": json.dumps(body)}, files=files, headers=h
    )


def add_photos(client: Any, case_id: str, photos: list[bytes], **kw: Any) -> Any:
    files = [("media", (f"p{i}.png", p, "application/octet-stream")) for i, p in enumerate(photos)]
    data = {"kind": kw.pop("kind")} if "kind" in kw else None
    return client.post(f"/api/v1/incidents/{case_id}/media", files=files, data=data, **kw)


def test_a_report_with_photos_keeps_them_and_serves_stripped_copies(client, media_dir):
    body = report_json()
    lon, lat = body["lon"], body["lat"]
    near = jpeg(1200, 900, gps=(lon + 0.002, lat), taken=datetime(2026, 12, 1, 9, 30), seed=1)
    far = jpeg(
        640, 480, gps=(lon + 0.1, lat), taken=datetime(2026, 12, 1, 9, 30), offset="+00:00", seed=2
    )
    bare = encoded("PNG", 300, 200, gps=False)  # no GPS at all
    r = send_report(client, body, [near, far, bare], key=str(uuid.uuid4()))
    assert r.status_code == 201, r.text
    case = r.json()
    listing = client.get(f"/api/v1/incidents/{case['id']}/media").json()
    assert listing["count"] == 3
    by_sha = {m["sha256"]: m for m in listing["items"]}
    m_near = by_sha[hashlib.sha256(near).hexdigest()]
    m_far = by_sha[hashlib.sha256(far).hexdigest()]
    m_bare = by_sha[hashlib.sha256(bare).hexdigest()]
    assert {m["kind"] for m in listing["items"]} == {"report"}
    assert m_near["content_type"] == "image/jpeg" and m_bare["content_type"] == "image/png"
    # ~0.002 degrees of longitude at 30 N is ~190 m (geography); 0.1 degrees is ~9.6 km
    assert 150 < m_near["distance_m"] < 250 and not m_near["far"]
    assert 9000 < m_far["distance_m"] < 10500 and m_far["far"]
    assert m_bare["has_gps"] is False and m_bare["distance_m"] is None and not m_bare["far"]
    # no zone in EXIF: Beijing time; OffsetTimeOriginal +00:00 wins when given
    assert m_near["taken_at"].endswith("+00:00")  # returned in UTC by the database
    assert datetime.fromisoformat(m_near["taken_at"]) == datetime.fromisoformat(
        "2026-12-01T09:30:00+08:00"
    )
    assert datetime.fromisoformat(m_far["taken_at"]) == datetime.fromisoformat(
        "2026-12-01T09:30:00+00:00"
    )
    assert m_near["gps"]["coordinates"][0] == pytest.approx(lon + 0.002, abs=1e-4)  # admin only

    for m in listing["items"]:
        thumb = client.get(m["thumb"])
        screen = client.get(m["screen"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert_stripped(thumb.content)
        assert_stripped(screen.content)
        assert max(Image.open(io.BytesIO(thumb.content)).size) <= 320
        assert max(Image.open(io.BytesIO(screen.content)).size) <= 1600
        # the admin's original is byte for byte what was sent, with its metadata
        orig = client.get(m["original"])
        assert orig.status_code == 200 and hashlib.sha256(orig.content).hexdigest() == m["sha256"]
        assert orig.headers["content-disposition"].startswith("attachment;")
        assert "sandbox" in orig.headers["content-security-policy"]
        assert orig.headers["x-content-type-options"] == "nosniff"
    assert SERIAL.encode() in client.get(m_near["original"]).content

    # stored once, under its hash, in a content-addressed folder
    sha = m_near["sha256"]
    assert (media_dir / "originals" / sha[:2] / sha[2:4] / sha).read_bytes() == near


def test_orientation_is_applied_to_the_served_copies(client):
    case = send_report(client, report_json(), [jpeg(400, 200, orientation=6)]).json()
    item = client.get(f"/api/v1/incidents/{case['id']}/media").json()["items"][0]
    w, h = Image.open(io.BytesIO(client.get(item["screen"]).content)).size
    assert (item["width"], item["height"]) == (400, 200)  # as stored
    assert h > w  # rotated upright: the phone was held on its side


def test_same_key_same_report_and_photos_is_one_case_different_photo_is_409(client):
    body = report_json()
    photos = [jpeg(seed=3), jpeg(seed=4)]
    key = str(uuid.uuid4())
    first = send_report(client, body, photos, key=key)
    assert first.status_code == 201, first.text
    again = send_report(client, body, list(reversed(photos)), key=key)  # order does not matter
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert client.get(f"/api/v1/incidents/{first.json()['id']}/media").json()["count"] == 2
    other = send_report(client, body, [photos[0], jpeg(seed=5)], key=key)
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    no_photos = client.post("/api/v1/incidents", json=body, headers={"Idempotency-Key": key})
    assert no_photos.status_code == 409


def test_one_bad_photo_refuses_the_whole_report_naming_its_index(client, conn):
    good = jpeg(seed=6)
    broken = jpeg(seed=7)
    broken = broken[: len(broken) // 2]
    key = str(uuid.uuid4())
    before = conn.execute("SELECT count(*) AS n FROM incidents").fetchone()["n"]
    r = send_report(client, report_json(), [good, broken], key=key)
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["code"] == "corrupt_image" and err["detail"]["index"] == 1
    assert conn.execute("SELECT count(*) AS n FROM incidents").fetchone()["n"] == before
    # the phone can fix it and send again under the same key
    assert send_report(client, report_json(), [good], key=key).status_code == 201


@pytest.mark.parametrize(
    ("payload", "code", "status"),
    [
        (b"GIF89a" + b"\x00" * 200, "unsupported_media_type", 415),
        (
            b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
            "unsupported_media_type",
            415,
        ),
        (b"%PDF-1.4\n" + b"x" * 100, "unsupported_media_type", 415),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "corrupt_image", 422),
        (png_header(100_000, 100_000), "media_too_large", 413),
        (png_header(7000, 6000), "media_too_large", 413),  # 42 MP > 40 MP
        (b"\x89PNG\r\n\x1a\n" + b"junk" * 10, "corrupt_image", 422),
    ],
)
def test_refusals_have_their_codes(client, payload, code, status):
    # the declared type and name say JPEG: only the content counts
    r = send_report(client, report_json(), [jpeg(seed=8), payload])
    assert r.status_code == status, r.text
    assert r.json()["code"] == code and r.json()["detail"]["index"] == 1


def test_byte_and_count_limits_are_settings_and_in_the_catalogue(client, monkeypatch):
    limits(monkeypatch, max_bytes=50_000, max_count=2)
    cat = client.get("/api/v1/catalogue").json()["media"]
    assert cat["max_bytes"] == 50_000 and cat["max_count"] == 2 and cat["max_pixels"] == 40_000_000
    big = jpeg(1600, 1200, quality=95)
    assert len(big) > 50_000
    r = send_report(client, report_json(), [big])
    assert r.status_code == 413 and r.json()["code"] == "media_too_large"
    small = [jpeg(64, 48, seed=s, icc=False) for s in range(3)]
    r = send_report(client, report_json(), small)
    assert r.status_code == 422 and r.json()["code"] == "too_many_media"
    case = send_report(client, report_json(), small[:2]).json()
    r = add_photos(client, case["id"], small[2:])
    assert r.status_code == 422 and r.json()["code"] == "too_many_media"
    assert r.json()["detail"]["on_case"] == 2
    # a photo already on the case is not counted again, nor stored again
    again = add_photos(client, case["id"], small[:1])
    assert again.status_code == 200 and again.json()["added"] == 0


def test_access_follows_the_case(client, api_keys):
    worker = bearer(api_keys[f"grid_worker:{ANJU}"])
    r = send_report(client, report_json(ANJU, metres=6000), [jpeg(seed=9)], headers=worker)
    assert r.status_code == 201, r.text
    case = r.json()
    mine = client.get(f"/api/v1/incidents/{case['id']}/media", headers=worker).json()
    item = mine["items"][0]
    assert "original" not in item and "gps" not in item
    assert client.get(item["thumb"], headers=worker).status_code == 200
    # the reporter's own original: not even the reporter; admins only
    orig = f"/api/v1/incidents/{case['id']}/media/{item['sha256']}/original"
    assert client.get(orig, headers=worker).status_code == 403
    assert client.get(orig).status_code == 200
    for other in (api_keys[f"grid_worker:{TONGNAN}"], api_keys[f"operator:{TONGNAN}"]):
        h = bearer(other)
        assert client.get(f"/api/v1/incidents/{case['id']}/media", headers=h).status_code == 404
        assert client.get(item["thumb"], headers=h).status_code == 404
        assert client.get(orig, headers=h).status_code == 404
        assert add_photos(client, case["id"], [jpeg(seed=10)], headers=h).status_code == 404
    op = bearer(api_keys[f"operator:{ANJU}"])
    assert client.get(item["screen"], headers=op).status_code == 200


def test_the_teams_photo_during_handling_is_the_resolution(client, api_keys):
    case = send_report(client, report_json(ANJU), [jpeg(seed=11)]).json()
    for action in ("accept", "dispatch", "start"):
        r = client.post(
            f"/api/v1/incidents/{case['id']}/transitions", json={"action": action, "side": ANJU}
        )
        assert r.status_code == 200, r.text
    team = client.get(f"/api/v1/incidents/{case['id']}").json()["teams"]
    lead_team = next(t["code"] for t in team if t.get("lead"))
    assert lead_team  # the seeded team on Anju's side leads
    r = add_photos(client, case["id"], [jpeg(seed=12)])  # an admin, while in progress
    assert r.status_code == 201 and r.json()["items"][0]["kind"] == "resolution"
    worker = bearer(api_keys[f"grid_worker:{ANJU}"])
    mine = client.post("/api/v1/incidents", json=report_json(ANJU), headers=worker).json()
    r = add_photos(client, mine["id"], [jpeg(seed=13)], kind="resolution", headers=worker)
    assert r.status_code == 403
    r = add_photos(client, mine["id"], [jpeg(seed=13)], headers=worker)
    assert r.status_code == 201 and r.json()["items"][0]["kind"] == "report"


def test_each_photo_is_in_the_audit_trail_and_verify_checks_the_files(client, conn, media_dir):
    from api.usecases.media import stores
    from layers.incidents import verify_chain
    from layers.media import verify_files

    photo = jpeg(seed=14)
    sha = hashlib.sha256(photo).hexdigest()
    case = send_report(client, report_json(), [photo]).json()
    events = client.get(f"/api/v1/incidents/{case['id']}/events").json()["events"]
    added = [e for e in events if e["action"] == "add_media"]
    assert [e["payload"]["sha256"] for e in added] == [sha]
    assert added[0]["from_status"] == added[0]["to_status"] == "reported"
    assert not [b for b in verify_chain(conn)["breaks"] if b["code"] == case["code"]]
    store = stores(settings.media().dir).originals
    assert verify_files(conn, store)["problems"] == []
    path = media_dir / "originals" / sha[:2] / sha[2:4] / sha
    path.write_bytes(photo[:-1] + b"\x00")  # one byte changed on disk
    problems = verify_files(conn, store)["problems"]
    assert {"sha256": sha, "problem": "the file no longer has its hash"} in problems
    path.unlink()
    assert {"sha256": sha, "problem": "the file is missing"} in verify_files(conn, store)[
        "problems"
    ]


def test_a_cached_copy_is_made_again_from_the_original(client, media_dir):
    case = send_report(client, report_json(), [jpeg(seed=15)]).json()
    item = client.get(f"/api/v1/incidents/{case['id']}/media").json()["items"][0]
    cached = (
        media_dir
        / "copies"
        / item["sha256"][:2]
        / item["sha256"][2:4]
        / f"{item['sha256']}.screen.jpg"
    )
    assert not cached.exists()  # the upload is answered before its copies are made
    served = client.get(item["screen"])
    assert (
        served.status_code == 200
        and cached.exists()
        and cached.with_name(f"{item['sha256']}.thumb.jpg").exists()
    )  # the first view makes both sizes
    first = cached.read_bytes()
    assert served.content == first
    cached.unlink()
    again = client.get(item["screen"])
    assert again.status_code == 200 and again.content == first and cached.exists()
    sha = item["sha256"]
    cached.unlink()
    (media_dir / "originals" / sha[:2] / sha[2:4] / sha).unlink()
    gone = client.get(item["screen"])  # a lost file is named, not a 500
    assert gone.status_code == 404 and "audit-trail verify" in gone.json()["message"]
    assert client.get(item["original"]).status_code == 404


def test_concurrent_first_views_make_the_copies_once(client, media_dir, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from api.usecases import media
    from gis import photos

    case = send_report(client, report_json(), [jpeg(1200, 900, seed=21)]).json()
    sha = client.get(f"/api/v1/incidents/{case['id']}/media").json()["items"][0]["sha256"]
    made: list[str] = []
    real = photos.copies

    def counted(data: bytes, **kw: int) -> tuple[photos.Copy, photos.Copy]:
        made.append(hashlib.sha256(data).hexdigest())
        time.sleep(0.2)  # hold the first maker so that the others arrive while it works
        return real(data, **kw)

    monkeypatch.setattr(photos, "copies", counted)
    where = media.stores(settings.media().dir)
    sizes = ["screen", "thumb"] * 4
    with ThreadPoolExecutor(len(sizes)) as pool:
        got = list(pool.map(lambda s: media.served_copy(where, sha, s, settings.media()), sizes))
    assert made == [sha]  # eight concurrent first views, one making
    assert len(set(got[0::2])) == 1 and len(set(got[1::2])) == 1 and got[0] != got[1]
    for data in got:
        assert_stripped(data)
    folder = media_dir / "copies" / sha[:2] / sha[2:4]
    assert sorted(p.name for p in folder.iterdir()) == [f"{sha}.screen.jpg", f"{sha}.thumb.jpg"]
    assert media._making == {}  # no lock kept once the copies are made


def test_public_feeds_link_the_screen_copy_only_for_open_categories(client, conn):
    open_case = send_report(client, report_json(category="illegal_dumping"), [jpeg(seed=16)]).json()
    secret = send_report(client, report_json(category="drugs"), [jpeg(seed=17)]).json()
    r311 = client.get(f"/open311/v2/requests/{open_case['code']}.json")
    assert r311.status_code == 200, r311.text
    url = r311.json()[0]["media_url"]
    assert url and "/media/public/" in url and open_case["id"] not in url
    anon = client.get(url.split("testserver", 1)[-1], headers={"Authorization": ""})
    assert anon.status_code == 200 and anon.headers["content-type"] == "image/jpeg"
    assert_stripped(anon.content)
    feat = client.get(f"/ogc/collections/incidents/items/{open_case['id']}").json()
    assert feat["properties"]["media"][0].endswith(url.rsplit("/", 1)[-1])
    assert client.get(f"/open311/v2/requests/{secret['code']}.json").json()[0]["media_url"] is None
    sfeat = client.get(f"/ogc/collections/incidents/items/{secret['id']}").json()
    assert not sfeat["properties"].get("media")
    # the sensitive case's token does not work either, even if it leaked
    from layers.media import public_tokens

    token = public_tokens(conn, [secret["id"]])
    assert token  # the capability exists ...
    leaked = next(iter(token.values()))[0]
    assert client.get(f"/media/public/{leaked}").status_code == 404  # ... but serves nothing
    assert client.get(f"/media/public/{'x' * 32}").status_code == 404


def test_dashboard_counts_cases_with_and_without_photos(client):
    before = {r["side"]: r for r in client.get("/api/v1/stats").json()["photos"]}
    send_report(client, report_json(ANJU), [jpeg(seed=18)])
    client.post("/api/v1/incidents", json=report_json(ANJU))
    after = {r["side"]: r for r in client.get("/api/v1/stats").json()["photos"]}
    b = before.get(ANJU, {"with_photos": 0, "without_photos": 0})
    assert after[ANJU]["with_photos"] == b["with_photos"] + 1
    assert after[ANJU]["without_photos"] == b["without_photos"] + 1
    page = client.get("/dashboard", headers={"Accept": "text/html"})
    assert page.status_code == 200 and 'id="photos"' in page.text and "有照片" in page.text
    csv = client.get("/api/v1/stats?format=csv&table=photos")
    assert csv.status_code == 200 and "with_photos" in csv.text


def test_json_reports_still_work_and_refuse_as_before(client):
    assert client.post("/api/v1/incidents", json=report_json()).status_code == 201
    r = client.post("/api/v1/incidents", json={"lon": 105.6})
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    assert r.json()["detail"][0]["field"] == "category"
    r = client.post(
        "/api/v1/incidents", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_json"  # as every JSON route
    r = add_photos(client, "00000000-0000-4000-8000-000000000000", [jpeg()])
    assert r.status_code == 404
    r = client.post(
        "/api/v1/incidents",
        content=json.dumps(report_json()),
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"
    r = client.post("/api/v1/incidents/x/media", json={"media": []})
    assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"


def test_the_gallery_partial_and_the_map_popup_show_the_photos(client, conn):
    from api.pages import config
    from api.usecases import media
    from layers import incidents

    body = report_json()
    near = jpeg(gps=(body["lon"] + 0.001, body["lat"]), taken=datetime(2026, 12, 1, 8, 0), seed=20)
    bare = encoded("PNG", 120, 90, gps=False)
    case = send_report(client, body, [near, bare]).json()
    for action in ("accept", "dispatch", "start"):
        client.post(
            f"/api/v1/incidents/{case['id']}/transitions", json={"action": action, "side": ANJU}
        )
    assert (
        add_photos(client, case["id"], [jpeg(seed=21)]).json()["items"][0]["kind"] == "resolution"
    )
    row = incidents.get(conn, case["id"])
    html = (
        config.templates()
        .get_template("media_gallery.html")
        .render(**media.gallery_context(conn, row, admin=False))
    )
    assert "<script" not in html
    assert html.count('class="jg-photo') == 3
    before, after = html.split('data-kind="resolution"')
    assert before.count("jg-photo") == 2 and after.count("jg-photo") == 1
    assert "无GPS信息" in before and "距上报位置" in before
    assert "2026年12月01日 08:00" in before  # EXIF time read as Beijing time, shown as such
    assert "网格员" not in html and "管理员" in html  # who added each (an admin key here)
    popup = client.get(f"/map/popup/{case['id']}")
    assert popup.status_code == 200
    items = client.get(f"/api/v1/incidents/{case['id']}/media").json()["items"]
    for m in items:
        assert m["thumb"] in popup.text
    # The case page shows them too, before and after.
    page = client.get(f"/cases/{case['code']}")
    assert page.status_code == 200
    assert page.text.count('class="jg-photo') == 3 and 'data-kind="resolution"' in page.text
    for m in items:
        assert m["thumb"] in page.text


def test_a_photo_that_passes_the_quick_check_but_does_not_decode_is_refused_and_never_served(
    client, conn
):
    from tests.mediagen import undecodable_png

    bad = undecodable_png()
    sha = hashlib.sha256(bad).hexdigest()
    good = jpeg(seed=30)
    # a subscriber of every event (the delivery worker does not run here: the outbox keeps it)
    sub = client.post(
        "/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["*"], "allow_private": True},
    )
    assert sub.status_code == 201, sub.text
    try:
        _refused_after_the_answer(client, conn, good, bad, sha)
    finally:
        client.post(f"/api/v1/webhooks/{sub.json()['id']}/disable")


def _refused_after_the_answer(client, conn, good: bytes, bad: bytes, sha: str) -> None:
    from layers.incidents import verify_chain

    case = send_report(client, report_json(), [good, bad], key=str(uuid.uuid4()))
    assert case.status_code == 201, case.text  # its structure is whole: acknowledged, durable
    case = case.json()
    url = f"/api/v1/incidents/{case['id']}/media"
    items = {m["sha256"]: m for m in client.get(url).json()["items"]}
    assert items[sha]["state"] == "pending"
    token = conn.execute("SELECT public_token FROM media WHERE sha256 = %s", (sha,)).fetchone()
    # the first view decodes it: it fails, it is refused, and nothing of it is served
    r = client.get(items[sha]["screen"])
    assert r.status_code == 404 and r.json()["detail"]["state"] == "refused", r.text
    assert r.json()["detail"]["refusal"]["code"] == "corrupt_image"
    assert client.get(items[sha]["thumb"]).status_code == 404
    assert client.get(f"/media/public/{token['public_token']}").status_code == 404
    assert client.get(items[sha]["original"]).status_code == 200  # the admin's evidence
    after = {m["sha256"]: m for m in client.get(url).json()["items"]}
    assert after[sha]["state"] == "refused" and after[sha]["refusal"]["code"] == "corrupt_image"
    good_sha = hashlib.sha256(good).hexdigest()
    assert client.get(after[good_sha]["screen"]).status_code == 200
    assert {m["sha256"]: m for m in client.get(url).json()["items"]}[good_sha]["state"] == "ready"
    # the trail says so, carrying its hash, and the chain still verifies
    events = client.get(f"/api/v1/incidents/{case['id']}/events").json()["events"]
    refused = [e for e in events if e["action"] == "media_refused"]
    assert [e["payload"]["sha256"] for e in refused] == [sha]
    assert refused[0]["payload"]["code"] == "corrupt_image"
    assert not [b for b in verify_chain(conn)["breaks"] if b["code"] == case["code"]]
    # pushed as incident.media_refused, after the two photo_added of the upload
    types = [
        r["event_type"]
        for r in conn.execute(
            "SELECT event_type FROM outbox WHERE incident_id = %s::uuid AND kind = 'webhook'"
            " ORDER BY id",
            (case["id"],),
        ).fetchall()
    ]
    assert types[-3:] == ["incident.photo_added"] * 2 + ["incident.media_refused"], types
    # feeds do not link it; the case page shows it as refused, without an image
    feat = client.get(f"/ogc/collections/incidents/items/{case['id']}").json()
    assert not any(token["public_token"] in u for u in feat["properties"]["media"])
    page = client.get(f"/cases/{case['code']}").text
    assert 'data-state="refused"' in page and after[sha]["thumb"] not in page
    assert after[sha]["thumb"] not in client.get(f"/map/popup/{case['id']}").text
    # the same bytes sent again, anywhere, are refused at once with the contract's code
    other = client.post("/api/v1/incidents", json=report_json()).json()
    again = add_photos(client, other["id"], [jpeg(seed=31), bad])
    assert again.status_code == 422 and again.json()["code"] == "corrupt_image"
    assert again.json()["detail"]["index"] == 1
    assert client.get(f"/api/v1/incidents/{other['id']}/media").json()["count"] == 0


def one_user(conn: Any) -> Any:
    """The finisher's ``connection``: the test's one connection, one user at a time."""
    import contextlib
    import threading

    lock = threading.Lock()

    @contextlib.contextmanager
    def connection() -> Iterator[Any]:
        with lock:
            yield conn

    return connection


def test_the_finisher_makes_copies_after_the_answer_and_sweeps_what_a_crash_left(
    client, conn, media_dir
):
    from api.usecases import media
    from layers import media as media_layer
    from tests.mediagen import undecodable_png

    good, bad = jpeg(seed=32), undecodable_png(200, 100)
    case = send_report(client, report_json(), [good, bad]).json()
    shas = [hashlib.sha256(p).hexdigest() for p in (good, bad)]
    connection = one_user(conn)

    where = media.stores(settings.media().dir)
    # As after a crash: the rows are pending and no process remembers them; a sweep finds them.
    assert set(shas) <= set(media_layer.pending(conn, limit=1_000_000))
    finisher = media.Finisher(connection, where, settings.media(), threads=1, sweep_s=3600)
    finisher.start()

    def states() -> dict[str, str]:
        rows = conn.execute(
            "SELECT sha256, state FROM media WHERE incident_id = %s::uuid", (case["id"],)
        ).fetchall()
        return {r["sha256"]: r["state"] for r in rows}

    def events() -> int:
        return conn.execute(
            "SELECT count(*) AS n FROM incident_events WHERE incident_id = %s::uuid",
            (case["id"],),
        ).fetchone()["n"]

    try:
        finisher.submit(shas)
        assert finisher.wait_idle(120)
        assert states() == {shas[0]: "ready", shas[1]: "refused"}
        assert where.copies.exists(media.copy_key(shas[0], "screen"))
        assert where.copies.exists(media.copy_key(shas[0], "thumb"))
        assert not where.copies.exists(media.copy_key(shas[1], "screen"))
        assert not set(shas) & set(media_layer.pending(conn, limit=1_000_000))
        # finished once: submitted again, nothing changes and no event is added
        n = events()
        finisher.submit(shas)
        assert finisher.wait_idle(120)
        assert events() == n and states() == {shas[0]: "ready", shas[1]: "refused"}
    finally:
        finisher.stop()


def test_a_full_finisher_queue_never_blocks_an_upload_nor_loses_a_photo(client, conn, media_dir):
    from api.usecases import media
    from layers import media as media_layer

    photos = [jpeg(seed=s) for s in (41, 42, 43)]
    case = send_report(client, report_json(), photos).json()
    shas = [hashlib.sha256(p).hexdigest() for p in photos]
    connection = one_user(conn)

    where = media.stores(settings.media().dir)
    finisher = media.Finisher(
        connection, where, settings.media(), threads=1, sweep_s=3600, queue_size=1
    )
    # Not started: the queue holds one; the others are not queued (submit does not wait) and
    # stay pending on record.
    assert finisher.submit(shas) == 1 and finisher.left_to_sweep == 2
    finisher.start()  # its first sweep queues what is pending, as far as there is room
    try:
        deadline = time.monotonic() + 120
        while set(shas) & set(media_layer.pending(conn, limit=1_000_000)):
            assert time.monotonic() < deadline, "the sweep did not finish the pending photos"
            finisher.sweep()
            finisher.wait_idle(30)
        rows = conn.execute(
            "SELECT sha256, state FROM media WHERE incident_id = %s::uuid", (case["id"],)
        ).fetchall()
        assert {r["sha256"]: r["state"] for r in rows} == dict.fromkeys(shas, "ready")
        for sha in shas:
            assert where.copies.exists(media.copy_key(sha, "screen"))
    finally:
        finisher.stop()


def test_while_an_upload_is_in_flight_one_finisher_thread_works(client, conn, media_dir):
    from api.usecases import media
    from layers import media as media_layer

    photos = [jpeg(1600, 1200, seed=s) for s in range(50, 56)]
    send_report(client, report_json(), photos)
    shas = [hashlib.sha256(p).hexdigest() for p in photos]
    connection = one_user(conn)

    finisher = media.Finisher(
        connection, media.stores(settings.media().dir), settings.media(), threads=2, sweep_s=3600
    )
    most = 0
    try:
        with finisher.uploading():
            finisher.start()
            finisher.submit(shas)
            deadline = time.monotonic() + 120
            while set(shas) & set(media_layer.pending(conn, limit=1_000_000)):
                assert time.monotonic() < deadline, "the first thread did not finish them"
                most = max(most, finisher._busy)
                time.sleep(0.001)
        assert most == 1  # the second thread waited for the upload to end
        assert finisher.wait_idle(30)
    finally:
        finisher.stop()
