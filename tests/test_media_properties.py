"""Property tests: whatever bytes arrive as a photo, the answer is a clean photo or a refusal
with its code, never a 5xx. Generated images in every accepted format and many modes, EXIF
with GPS and a maker note, XMP and ICC, then truncated, damaged, polyglot and bomb files."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

from gis import photos
from gis.errors import CorruptImage, MediaTooLarge, TooManyMedia, UnsupportedMediaType
from tests.geo import ANJU, point_inside
from tests.mediagen import assert_stripped, exif, picture, png_header

REFUSALS = (CorruptImage, MediaTooLarge, UnsupportedMediaType)
LIMITS = {"max_bytes": 2_000_000, "max_pixels": 4_000_000, "thumb_px": 64, "screen_px": 256}
FORMATS = ("JPEG", "PNG", "WEBP", "HEIF")
MODES = {
    "JPEG": ("RGB", "L", "CMYK"),
    "PNG": ("RGB", "RGBA", "L", "LA", "P", "I;16"),
    "WEBP": ("RGB", "RGBA"),
    "HEIF": ("RGB", "RGBA"),
}


@st.composite
def images(draw: Any) -> bytes:
    """A valid image in an accepted format, with or without a phone's metadata."""
    fmt = draw(st.sampled_from(FORMATS))
    mode = draw(st.sampled_from(MODES[fmt]))
    w = draw(st.integers(1, 300))
    h = draw(st.integers(1, 300))
    img = picture(w, h, seed=draw(st.integers(0, 50)))
    img = img.convert("I;16") if mode == "I;16" else img.convert(mode)
    params: dict[str, Any] = {}
    if draw(st.booleans()):
        gps = draw(
            st.one_of(
                st.none(),
                st.tuples(st.floats(-180, 180), st.floats(-90, 90)),
            )
        )
        taken = draw(st.one_of(st.none(), st.datetimes(datetime(2000, 1, 1), datetime(2030, 1, 1))))
        params["exif"] = exif(
            gps=gps,
            taken=taken,
            offset=draw(st.sampled_from([None, "+08:00", "-05:00", "garbage", "+99:99"])),
            orientation=draw(st.integers(0, 9)),
            maker_note=draw(st.booleans()),
        ).tobytes()
    if draw(st.booleans()) and mode in ("RGB", "RGBA") and fmt != "HEIF":
        profile = draw(st.sampled_from(["sRGB", "LAB", "XYZ"]))
        params["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile(profile)).tobytes()  # type: ignore[arg-type]
    if fmt == "HEIF":
        params["quality"] = 50
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


@st.composite
def hostile(draw: Any) -> bytes:
    """Bytes that may or may not be an image: cut, damaged, wrapped or made up."""
    base = draw(images())
    how = draw(
        st.sampled_from(["truncate", "flip", "append", "prepend", "polyglot", "bomb", "random"])
    )
    if how == "truncate":
        return base[: draw(st.integers(0, max(0, len(base) - 1)))]
    if how == "flip":
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)
    if how == "append":  # a JPEG with an HTML page or a ZIP behind it
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("evil.html", "<script>alert(1)</script>")
        tail = draw(st.sampled_from([buf.getvalue(), b"<html><script>alert(1)</script></html>"]))
        return base + tail
    if how == "prepend":
        return draw(st.sampled_from([b"GIF89a", b"<html>", b"%PDF-1.7\n", b"PK\x03\x04"])) + base
    if how == "polyglot":  # a ZIP whose first entry is the image: starts with PK, not a photo
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            z.writestr("a.jpg", base)
        return buf.getvalue()
    if how == "bomb":
        side = draw(st.integers(2_001, 1_000_000))
        return png_header(side, side)
    return draw(st.binary(min_size=0, max_size=2048))


def _check(data: bytes) -> photos.Photo | None:
    try:
        return photos.check(data, **LIMITS)
    except REFUSALS:
        return None


def _clean(p: photos.Photo) -> None:
    for copy in (p.thumb, p.screen):
        assert_stripped(copy.data)
        assert max(copy.width, copy.height) <= (64 if copy is p.thumb else 256)
        assert Image.open(io.BytesIO(copy.data)).mode == "RGB"


@settings(max_examples=150, deadline=None)
@given(images())
def test_every_valid_image_is_accepted_and_stripped(data: bytes) -> None:
    p = photos.check(data, **LIMITS)
    assert p.content_type in photos.FORMATS
    _clean(p)
    if p.gps is not None:
        lon, lat = p.gps
        assert -180 <= lon <= 180 and -90 <= lat <= 90
    if p.taken_at is not None:
        assert p.taken_at.tzinfo is not None


@settings(max_examples=300, deadline=None)
@given(hostile())
def test_hostile_bytes_are_clean_photos_or_refused_with_a_code(data: bytes) -> None:
    p = _check(data)
    if p is not None:
        _clean(p)


@settings(max_examples=300, deadline=None)
@given(hostile())
def test_what_the_upload_check_accepts_its_copies_can_be_made_from(data: bytes) -> None:
    """The request only validates (a JPEG decoded at 1/8); the copies come later from the
    stored original, so whatever validation lets through must make clean copies. (This found
    a damaged PNG accepted when EXIF was read before the decode: PNG's getexif() decodes.)"""
    try:
        c = photos.validate(data, max_bytes=LIMITS["max_bytes"], max_pixels=LIMITS["max_pixels"])
    except REFUSALS:
        return
    thumb, screen = photos.copies(c.data, thumb_px=64, screen_px=256)
    for copy in (thumb, screen):
        assert_stripped(copy.data)


def test_a_cut_jpeg_is_refused_by_the_reduced_decode() -> None:
    buf = io.BytesIO()
    picture(800, 600, seed=3).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    photos.validate(data, max_bytes=LIMITS["max_bytes"], max_pixels=LIMITS["max_pixels"])
    for cut in (len(data) // 3, len(data) // 2, len(data) - 64, len(data) - 3):
        with pytest.raises(CorruptImage):
            photos.validate(
                data[:cut], max_bytes=LIMITS["max_bytes"], max_pixels=LIMITS["max_pixels"]
            )


def test_the_gps_and_time_are_read_from_exif() -> None:
    buf = io.BytesIO()
    e = exif(gps=(105.58, 30.21), taken=datetime(2026, 12, 1, 9, 30, 5))
    picture(100, 80).save(buf, "JPEG", exif=e)
    p = photos.check(buf.getvalue(), **LIMITS)
    assert p.gps is not None
    assert p.gps[0] == pytest.approx(105.58, abs=1e-5) and p.gps[1] == pytest.approx(
        30.21, abs=1e-5
    )
    assert p.taken_at is not None and p.taken_at.isoformat() == "2026-12-01T09:30:05+08:00"


def test_a_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(MediaTooLarge) as info:
        photos.check(png_header(50_000, 50_000), **LIMITS)
    assert info.value.code == "media_too_large" and "max_pixels" in info.value.detail


# -- through the API: never a 5xx ----------------------------------------------------------


@pytest.fixture()
def media_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from api import settings as app_settings

    monkeypatch.setenv("JOINTGRID_MEDIA_DIR", str(tmp_path / "media"))
    monkeypatch.setenv("JOINTGRID_MEDIA_MAX_PIXELS", str(LIMITS["max_pixels"]))
    app_settings.media.cache_clear()
    yield tmp_path / "media"
    app_settings.media.cache_clear()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.one_of(images(), hostile()), min_size=1, max_size=3))
def test_the_api_answers_a_photo_or_a_coded_refusal(
    client: Any, media_dir: Any, parts: list[bytes]
) -> None:
    lon, lat = point_inside(ANJU, 3000, 0.5)
    r = client.post(
        "/api/v1/incidents",
        data={"report": json.dumps({"lon": lon, "lat": lat, "category": "illegal_dumping"})},
        files=[("media", ("photo.jpg", p, "image/jpeg")) for p in parts],
    )
    assert r.status_code < 500, r.text
    if r.status_code == 201:
        listing = client.get(f"/api/v1/incidents/{r.json()['id']}/media").json()
        assert listing["count"] == len(
            {photos.check(p, **{**LIMITS, "max_bytes": 10 << 20}).sha256 for p in parts}
        )
        for m in listing["items"]:
            assert_stripped(client.get(m["screen"]).content)
    else:
        err = r.json()
        assert err["code"] in ("corrupt_image", "media_too_large", "unsupported_media_type")
        assert 0 <= err["detail"]["index"] < len(parts)
        assert (
            r.status_code
            == {"corrupt_image": 422, "media_too_large": 413, "unsupported_media_type": 415}[
                err["code"]
            ]
        )


def test_too_many_is_its_own_refusal() -> None:
    from api.settings import MediaSettings
    from api.usecases.media import check_all

    with pytest.raises(TooManyMedia):
        check_all([b""] * 10, MediaSettings(max_count=9))
