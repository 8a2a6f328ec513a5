"""The feed never names the live-position collections (``team_positions``, ``patrol_tracks``)
to a caller who may not read them: not in the list of collections, not in the API document,
and not in the 404 for an unknown collection, which lists the collections there are. Against
a real uvicorn with JOINTGRID_PUBLIC_FEEDS=true (``live_server``), where anonymous callers
read the other feeds."""

from __future__ import annotations

import httpx
import pytest

from layers.registry import keyed
from tests.conftest import bearer

KEYED = sorted(keyed())
UNKNOWN = (
    "/ogc/collections/no_such_layer",
    "/ogc/collections/no_such_layer/items",
    "/ogc/collections/no_such_layer/items/1",
    "/ogc/collections/no_such_layer/queryables",
    "/ogc/collections/no_such_layer/items?f=html",
)


def test_the_keyed_collections_are_registered() -> None:
    assert KEYED == ["patrol_tracks", "team_positions"]


@pytest.mark.parametrize("path", UNKNOWN)
def test_an_anonymous_404_names_only_the_collections_it_may_read(live_server, path) -> None:
    r = httpx.get(f"{live_server}{path}", headers={"accept": "application/json"})
    assert r.status_code == 404, (path, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["code"] == "not_found"
    listed = body["detail"]["collections"]
    # it still says what there is to read ...
    assert "teams" in listed and "patrol_coverage" in listed
    # ... but not the live positions and tracks, anywhere in the answer
    for name in KEYED:
        assert name not in listed
        assert name not in r.text


def test_a_keyed_caller_is_told_of_them(live_server, api_keys) -> None:
    r = httpx.get(f"{live_server}/ogc/collections/no_such_layer", headers=bearer(api_keys["feed"]))
    assert r.status_code == 404
    assert set(KEYED) <= set(r.json()["detail"]["collections"])


def test_a_key_that_opens_nothing_learns_nothing(live_server) -> None:
    # an unknown (or revoked) key is refused before any collection is looked up
    r = httpx.get(
        f"{live_server}/ogc/collections/no_such_layer",
        headers={"authorization": "Bearer jg_no_such_key"},
    )
    assert r.status_code == 401
    for name in KEYED:
        assert name not in r.text


def test_the_lists_agree_with_the_404(live_server, api_keys) -> None:
    anonymous = httpx.get(f"{live_server}/ogc/collections").json()
    ids = {c["id"] for c in anonymous["collections"]}
    r = httpx.get(f"{live_server}/ogc/collections/no_such_layer")
    assert set(r.json()["detail"]["collections"]) == ids
    assert not ids & set(KEYED)
    assert not set(KEYED) & set(httpx.get(f"{live_server}/ogc/api").text.split('"'))
    keyed_view = httpx.get(f"{live_server}/ogc/collections", headers=bearer(api_keys["feed"]))
    assert set(KEYED) <= {c["id"] for c in keyed_view.json()["collections"]}
