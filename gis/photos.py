"""Photos as evidence: recognise, check, read their own position and time, make clean copies.

Pure computation on bytes (no files, no database). Nothing an upload carries is trusted: the
format is recognised from the content (the magic bytes, then Pillow's own parser restricted
to that one format), never from a file name or a declared type; the pixel count is checked
from the header before any pixel is decoded; the whole image is then decoded once, so a
truncated or damaged file is refused (a JPEG at the decoder's smallest DCT scale, 1/8: the
whole entropy-coded stream is still read, only the inverse transform is reduced). EXIF values
are read from the header, defensively, and used only as evidence (position, time), never to
decide anything about the file.

``validate`` is what an upload needs before it is acknowledged; ``copies`` makes the served
copies from a validated original, later. They are rotated upright, converted to sRGB, and
rebuilt from their pixels alone, so they carry no EXIF, XMP, ICC profile or maker note.
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pillow_heif
from PIL import Image, ImageCms, ImageOps

from gis.errors import CorruptImage, MediaTooLarge, UnsupportedMediaType

pillow_heif.register_heif_opener()

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")  # EXIF times carry no zone

# content type -> Pillow's format name
FORMATS = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/webp": "WEBP",
    "image/heic": "HEIF",
}
# ISO-BMFF brands of HEIF images (HEVC-coded stills and sequences, and the generic image brand)
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}

# EXIF tags (CIPA DC-008)
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATETIME, _DATETIME_ORIGINAL, _DATETIME_DIGITIZED = 0x0132, 0x9003, 0x9004
_OFFSET_TIME, _OFFSET_TIME_ORIGINAL, _OFFSET_TIME_DIGITIZED = 0x9010, 0x9011, 0x9012


@dataclass(frozen=True)
class Copy:
    """A served copy: JPEG bytes in sRGB with no metadata."""

    data: bytes
    width: int
    height: int


@dataclass(frozen=True)
class Checked:
    """A validated photo: its original bytes, what it is, and what it says about itself."""

    data: bytes
    sha256: str
    content_type: str
    width: int  # as stored (before rotation)
    height: int
    gps: tuple[float, float] | None  # (lon, lat) WGS84, from EXIF
    taken_at: datetime | None  # aware


@dataclass(frozen=True)
class Photo(Checked):
    """A validated photo with its two served copies made."""

    thumb: Copy
    screen: Copy


def sniff(data: bytes) -> str | None:
    """The content type the first bytes announce, or None (names and headers are not asked)."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        size = int.from_bytes(data[:4], "big")
        brands = [data[8:12]]
        end = min(max(size, 16), len(data), 256)
        brands += [data[i : i + 4] for i in range(16, end - 3, 4)]
        if any(b in _HEIF_BRANDS for b in brands):
            return "image/heic"
    return None


def check(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    thumb_px: int,
    screen_px: int,
) -> Photo:
    """``validate``, then ``copies``: the photo and both served copies at once."""
    c = validate(data, max_bytes=max_bytes, max_pixels=max_pixels)
    thumb, screen = copies(c.data, thumb_px=thumb_px, screen_px=screen_px)
    return Photo(
        **{f: getattr(c, f) for f in Checked.__dataclass_fields__}, thumb=thumb, screen=screen
    )


def validate(data: bytes, *, max_bytes: int, max_pixels: int) -> Checked:
    """Check one upload without making its copies; raise the refusal's domain error.

    ``max_pixels`` is width x height as the header declares it, checked before decoding. Every
    pixel is then decoded once (a JPEG at 1/8 scale), so a truncated or damaged file fails here.
    """
    if len(data) > max_bytes:
        raise MediaTooLarge(
            f"the photo is {len(data):,} bytes; at most {max_bytes:,} are accepted",
            {"bytes": len(data), "max_bytes": max_bytes},
        )
    ctype = _sniffed(data)
    img = _open(data, FORMATS[ctype], ctype, max_pixels)
    try:
        width, height = img.size
        if img.format == "JPEG":
            # Smallest DCT scale: every Huffman-coded block is still read and checked, so a
            # cut or damaged stream fails as in a full decode; the inverse DCT runs on 1x1.
            img.draft(img.mode, (max(1, width // 8), max(1, height // 8)))
        # Decode before reading EXIF: for some formats (PNG) getexif() loads the image itself,
        # and that failure would be swallowed by the defensive EXIF reader, leaving a damaged
        # file half-decoded and accepted.
        img.load()
        gps, taken_at = _evidence(img)
    except (MediaTooLarge, CorruptImage):
        raise
    except Exception as exc:
        # Decoders raise many kinds of error on hostile input (OSError, ValueError, SyntaxError,
        # struct.error, EOFError, ...): all of them mean the file cannot be used.
        raise _corrupt(ctype, exc) from exc
    finally:
        img.close()
    return Checked(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        content_type=ctype,
        width=width,
        height=height,
        gps=gps,
        taken_at=taken_at,
    )


def copies(data: bytes, *, thumb_px: int, screen_px: int) -> tuple[Copy, Copy]:
    """The (thumb, screen) copies of a validated original, long edges at most the given pixels.

    Called with a stored original (validated when it came): its pixel count is not limited again.
    """
    ctype = _sniffed(data)
    img = _open(data, FORMATS[ctype], ctype, 1 << 62)
    try:
        screen_img = _upright_srgb(img, screen_px)
    except (MediaTooLarge, CorruptImage):
        raise
    except Exception as exc:
        raise _corrupt(ctype, exc) from exc
    screen = _encode(screen_img)
    thumb_img = screen_img.copy()
    thumb_img.thumbnail((thumb_px, thumb_px), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return _encode(thumb_img), screen


def _sniffed(data: bytes) -> str:
    ctype = sniff(data)
    if ctype is None:
        raise UnsupportedMediaType(
            "this is not a JPEG, PNG, WebP or HEIC photo (judged by its content)",
            {"accepted": list(FORMATS)},
        )
    return ctype


def _corrupt(ctype: str, exc: BaseException) -> CorruptImage:
    return CorruptImage(
        "the photo cannot be decoded: it is truncated or damaged; take or export it again",
        {"type": ctype, "reason": str(exc)[:200] or type(exc).__name__},
    )


def _open(data: bytes, fmt: str, ctype: str, max_pixels: int) -> Image.Image:
    """Open the header with only the sniffed format's parser; refuse a bomb before decoding."""
    try:
        with warnings.catch_warnings():
            # Our own limit is checked below; Pillow's warning (and its 2x error) are a backstop.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise MediaTooLarge(
            "the photo declares more pixels than are accepted",
            {"reason": str(exc)[:200], "max_pixels": max_pixels},
        ) from exc
    except Exception as exc:
        raise _corrupt(ctype, exc) from exc
    w, h = img.size
    if w <= 0 or h <= 0:
        raise _corrupt(ctype, ValueError(f"declared size {w}x{h}"))
    if w * h > max_pixels:
        raise MediaTooLarge(
            f"the photo is {w}x{h} = {w * h:,} pixels; at most {max_pixels:,} are accepted",
            {"width": w, "height": h, "pixels": w * h, "max_pixels": max_pixels},
        )
    return img


def _upright_srgb(img: Image.Image, long_edge: int) -> Image.Image:
    """Decode (reduced by the JPEG decoder where it can), rotate upright, convert to sRGB."""
    w, h = img.size
    scale = long_edge / max(w, h)
    if img.format == "JPEG" and scale < 1:
        # DCT scaling: decode at 1/2, 1/4 or 1/8 while both sides stay at least the target's.
        # The whole stream is still read, so truncation is still found.
        img.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
    img.load()
    icc = img.info.get("icc_profile")
    # Shrink first, then turn: the rotation and the colour transform work on the small image.
    # Bicubic: after the decoder's own scaling the step left is small (at most 2x), where it
    # looks the same as Lanczos at half the time (measured in docs/performance.md).
    img.thumbnail((long_edge, long_edge), Image.Resampling.BICUBIC, reducing_gap=2.0)
    if img.getexif().get(0x0112, 1) != 1:
        img = ImageOps.exif_transpose(img)
    rgb = _to_srgb(img, icc)
    # Rebuild from the pixels alone: no info dict, so nothing of the original can be saved.
    return Image.frombytes("RGB", rgb.size, rgb.tobytes())


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(base, rgba)
    if img.mode not in ("RGB", "CMYK", "L"):
        img = img.convert("RGB")
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if img.mode == "RGB" and "srgb" in ImageCms.getProfileDescription(src).lower():
                return img  # already sRGB: the transform would change nothing
            out = ImageCms.profileToProfile(img, src, _SRGB, outputMode="RGB")
            if out is not None:
                return out
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken or mismatched profile: the pixels as they are, untagged
    return img.convert("RGB")


def _encode(img: Image.Image) -> Copy:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=82, optimize=False, progressive=False)
    return Copy(buf.getvalue(), img.width, img.height)


# -- evidence from EXIF ---------------------------------------------------------------------


def _evidence(img: Image.Image) -> tuple[tuple[float, float] | None, datetime | None]:
    try:
        exif = img.getexif()
    except Exception:
        return None, None
    return _gps(exif), _taken_at(exif)


def _gps(exif: Any) -> tuple[float, float] | None:
    try:
        g = exif.get_ifd(_GPS_IFD)
        lat = _dms(g.get(2), g.get(1), "NS")
        lon = _dms(g.get(4), g.get(3), "EW")
    except Exception:
        return None
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    if lat == 0 and lon == 0:  # "no fix" as some phones write it
        return None
    return (lon, lat)


def _dms(value: Any, ref: Any, refs: str) -> float | None:
    if value is None:
        return None
    parts = [float(v) for v in (value if isinstance(value, tuple | list) else (value,))]
    if not parts or len(parts) > 3 or not all(math.isfinite(p) and p >= 0 for p in parts):
        return None
    deg = sum(p / 60**i for i, p in enumerate(parts))
    r = ref.decode("ascii", "ignore") if isinstance(ref, bytes) else str(ref or "")
    r = r.strip("\x00 ").upper()[:1]
    if r == refs[1]:
        deg = -deg
    elif r and r != refs[0]:
        return None
    return deg


def _taken_at(exif: Any) -> datetime | None:
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:
        sub = {}
    for tag, off_tag, where in (
        (_DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL, sub),
        (_DATETIME_DIGITIZED, _OFFSET_TIME_DIGITIZED, sub),
        (_DATETIME, _OFFSET_TIME, exif),
    ):
        t = _exif_time(where.get(tag), where.get(off_tag) or sub.get(_OFFSET_TIME))
        if t is not None:
            return t
    return None


def _exif_time(value: Any, offset: Any) -> datetime | None:
    """``YYYY:MM:DD HH:MM:SS`` in the zone of ``offset`` (``+HH:MM``), else Asia/Shanghai."""
    if not isinstance(value, str):
        return None
    try:
        naive = datetime.strptime(value.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    return naive.replace(tzinfo=_zone(offset))


def _zone(offset: Any) -> timezone:
    if isinstance(offset, str):
        s = offset.strip("\x00 ")
        if len(s) == 6 and s[0] in "+-" and s[3] == ":" and s[1:3].isdigit() and s[4:].isdigit():
            minutes = int(s[1:3]) * 60 + int(s[4:])
            if minutes <= 14 * 60:
                return timezone(timedelta(minutes=minutes if s[0] == "+" else -minutes))
    return SHANGHAI
