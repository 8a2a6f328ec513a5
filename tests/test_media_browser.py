"""The phone's report page in Debian's Chromium: a photo attached while offline waits in
IndexedDB with the report, and is on the case once the network returns, once, even when the
first answer is lost on the way back."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import bearer, serving
from tests.geo import ANJU, point_inside
from tests.mediagen import jpeg
from tests.test_browser import PHONE, cases_with_key, new_page, wait_js

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def media_server(
    db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """A live server whose photos go to a folder of this module's own."""
    media_dir = tmp_path_factory.mktemp("media")
    log = media_dir.parent / "media-server.log"
    with serving(db_url, env={"JOINTGRID_MEDIA_DIR": str(media_dir)}, log=log) as (base, _proc):
        yield base, media_dir


IDB_COUNT = """() => new Promise((resolve, reject) => {
  const req = indexedDB.open("jointgrid-report", 1);
  req.onsuccess = () => {
    const t = req.result.transaction("photos", "readonly");
    const c = t.objectStore("photos").count();
    c.onsuccess = () => resolve(c.result);
    c.onerror = () => reject(c.error);
  };
  req.onerror = () => reject(req.error);
})"""


def test_a_photo_attached_offline_is_on_the_case_once_the_network_returns(
    media_server: tuple[str, Path], browser: Any, api_keys: dict[str, str], db_url: str
) -> None:
    base, media_dir = media_server
    auth = bearer(api_keys["admin"])
    lon, lat = point_inside(ANJU, 2500, 0.45)
    photo = jpeg(1024, 768, gps=(lon, lat), seed=77)
    sha = hashlib.sha256(photo).hexdigest()
    context, page, seen = new_page(browser, auth, viewport=PHONE, is_mobile=True, has_touch=True)
    posts: list[tuple[str | None, str]] = []
    page.on(
        "request",
        lambda r: (
            r.method == "POST"
            and r.url.endswith("/api/v1/incidents")
            and posts.append((r.headers.get("idempotency-key"), r.headers.get("content-type", "")))
        ),
    )
    try:
        page.goto(f"{base}/report")
        page.select_option("#category", "illegal_dumping")
        page.fill("#description", "河边乱倒渣土 / rubble dumped by the river")
        page.fill("#lon", f"{lon:.7f}")
        page.fill("#lat", f"{lat:.7f}")
        page.check("input[name=crs][value=wgs84]")  # typed numbers: from the phone's GPS

        context.set_offline(True)
        page.set_input_files(
            "#photo-gallery",
            files=[{"name": "IMG_0001.jpg", "mimeType": "image/jpeg", "buffer": photo}],
        )
        page.locator("#photo-list li.picked img").wait_for()
        page.click("#send")
        page.locator("#queue li.queued").wait_for()
        assert "1 张照片" in page.inner_text("#queue")
        queue = json.loads(page.evaluate("localStorage.getItem('jointgrid.report.queue.v1')"))
        assert len(queue) == 1 and queue[0]["photos"] == 1
        key = queue[0]["key"]
        assert page.evaluate(IDB_COUNT) == 1  # the blob waits on the phone
        assert cases_with_key(db_url, key) == [] and posts == []

        # Back online, but the first answer is lost: the server has the case and its photo.
        def lose_answer(route: Any) -> None:
            route.fetch()
            route.abort("connectionreset")

        page.route("**/api/v1/incidents", lose_answer)
        context.set_offline(False)
        wait_js(
            page, "document.querySelector('#queue li.queued small').textContent.includes('无网络')"
        )
        assert len(cases_with_key(db_url, key)) == 1
        page.unroute("**/api/v1/incidents")
        page.evaluate("window.dispatchEvent(new Event('online'))")
        page.locator("#results li.ok").wait_for(timeout=30_000)
        assert "1 张" in page.inner_text("#results li.ok .photos")
        wait_js(
            page, f"({IDB_COUNT})().then(n => n === 0)"
        )  # acknowledged: the blob is gone, never to be sent again
        assert json.loads(page.evaluate("localStorage.getItem('jointgrid.report.queue.v1')")) == []
    finally:
        context.close()
    rows = cases_with_key(db_url, key)
    assert len(rows) == 1
    assert [k for k, _ in posts] == [key, key]
    assert all(ct.startswith("multipart/form-data") for _, ct in posts)
    listing = httpx.get(
        f"{base}/api/v1/incidents/{rows[0]['id']}/media", headers=auth, timeout=30
    ).json()
    assert [m["sha256"] for m in listing["items"]] == [sha]  # on the case, once
    assert listing["items"][0]["distance_m"] < 5
    popup = httpx.get(f"{base}/map/popup/{rows[0]['id']}", headers=auth, timeout=30)
    assert listing["items"][0]["thumb"] in popup.text  # and on the map's popup
    assert (media_dir / "originals" / sha[:2] / sha[2:4] / sha).read_bytes() == photo
    assert seen.outside() == []
