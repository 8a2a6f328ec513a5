"""Photos as evidence: recognise, check, read their own position and time, make clean copies.

Pure computation on bytes (no files, no database). Nothing an upload carries is trusted: the
format is recognised from the content (the magic bytes, then Pillow's own parser restricted
to that one format), never from a file name or a declared type; the pixel count is checked
from the header before any pixel is decoded. EXIF values are read from the header,
defensively, and used only as evidence (position, time), never to decide anything about the
file.

Two checks, at two times:
- ``validate`` is what an upload needs before it is acknowledged. Besides the header it walks
  the file's whole structure without decoding a pixel: every JPEG segment to the end-of-image
  marker (the entropy-coded data scanned for its markers, restart markers in sequence), every
  PNG chunk with its CRC to IEND, the WebP RIFF chunks and VP8/VP8L frame headers, the HEIF
  boxes. A cut, truncated or spliced file, and a PNG with any damaged byte, is refused here.
- ``copies`` decodes every pixel once (a JPEG at the DCT scale of the screen copy) and makes
  the served copies; it is also the full check. A file whose structure is whole but whose
  coded data does not decode fails there (``CorruptImage``) and is kept out of every view.
The copies are rotated upright, converted to sRGB, and rebuilt from their pixels alone, so
they carry no EXIF, XMP, ICC profile or maker note.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import warnings
import zlib
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
    """Check one upload without decoding its pixels; raise the refusal's domain error.

    ``max_pixels`` is width x height as the header declares it, checked before anything else
    is read. Then the whole file's structure is walked (``structure``), so a cut or truncated
    file fails here; the pixels are decoded later, once, by ``copies``.
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
        raw_exif = structure(data, ctype)
        gps, taken_at = _evidence(img, raw_exif, ctype)
    except (MediaTooLarge, CorruptImage):
        raise
    except Exception as exc:
        # Parsers raise many kinds of error on hostile input (OSError, ValueError, SyntaxError,
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


# -- the structure of a file, walked without decoding -----------------------------------------


class _Broken(ValueError):
    """The file's structure is not whole; the message says where."""


def structure(data: bytes, ctype: str) -> bytes | None:
    """Walk the whole file's structure; raise ``_Broken`` where it is not whole.

    Returns a PNG's raw EXIF (its ``eXIf`` chunk, wherever it is), else None. Bytes after the
    image's own end (a JPEG's EOI, a PNG's IEND, the RIFF size) are ignored, as decoders do.
    """
    mv = memoryview(data)
    if ctype == "image/jpeg":
        _jpeg(data)
        return None
    if ctype == "image/png":
        return _png(mv)
    if ctype == "image/webp":
        _webp(mv)
        return None
    _heif(mv)
    return None


# A marker inside entropy-coded data: 0xFF followed by neither 0x00 (a stuffed byte) nor 0xFF
# (fill). Only restart markers (RST0-7) may appear inside a scan.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xff]")
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg(data: bytes) -> None:
    n = len(data)
    i = 2  # after SOI
    frame = scan = False
    while True:
        if i + 2 > n:
            raise _Broken(f"cut at byte {i:,}: no end-of-image marker")
        if data[i] != 0xFF:
            raise _Broken(f"no marker at byte {i:,} where a segment should start")
        m = data[i + 1]
        if m == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if m == 0xD9:  # EOI
            if not (frame and scan):
                raise _Broken("the image ends before its frame and scan")
            return
        if 0xD0 <= m <= 0xD7 or m == 0x01:  # standalone markers
            i += 2
            continue
        if i + 4 > n:
            raise _Broken(f"cut inside the segment at byte {i:,}")
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        end = i + 2 + length
        if length < 2 or end > n:
            raise _Broken(f"the segment at byte {i:,} runs past the end of the file")
        if m in _SOF:
            frame = True
        if m != 0xDA:
            i = end
            continue
        if not frame:
            raise _Broken("a scan before the frame header")
        scan = True
        # The entropy-coded data: find the marker that ends it; restart markers in order.
        j, rst = end, 0
        while True:
            found = _JPEG_MARKER.search(data, j)
            if found is None:
                raise _Broken("cut inside the coded data: no end-of-image marker")
            k = found.start()
            b = data[k + 1]
            if 0xD0 <= b <= 0xD7:
                if b - 0xD0 != rst:
                    raise _Broken(f"restart marker {b - 0xD0} at byte {k:,}, {rst} expected")
                rst = (rst + 1) % 8
                j = k + 2
                continue
            i = k
            break


def _png(mv: memoryview) -> bytes | None:
    n, pos = len(mv), 8
    first, idat, raw_exif = True, False, None
    while True:
        if pos + 12 > n:
            raise _Broken(f"cut at byte {pos:,}: no IEND chunk")
        length = int.from_bytes(mv[pos : pos + 4], "big")
        kind = bytes(mv[pos + 4 : pos + 8])
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > n:
            raise _Broken(f"the {kind!r} chunk at byte {pos:,} runs past the end of the file")
        crc = int.from_bytes(mv[end - 4 : end], "big")
        if zlib.crc32(mv[pos + 4 : end - 4]) != crc:
            raise _Broken(f"the {kind!r} chunk at byte {pos:,} is damaged (its CRC differs)")
        if first and kind != b"IHDR":
            raise _Broken("the first chunk is not IHDR")
        first = False
        if kind == b"IDAT":
            idat = True
        elif kind == b"eXIf":
            raw_exif = bytes(mv[pos + 8 : end - 4])
        elif kind == b"IEND":
            if not idat:
                raise _Broken("no image data (IDAT)")
            return raw_exif
        pos = end


def _webp(mv: memoryview) -> None:
    n = len(mv)
    riff_end = 8 + int.from_bytes(mv[4:8], "little")
    if riff_end > n:
        raise _Broken(f"the RIFF container declares {riff_end:,} bytes; {n:,} are here")
    pos, image = 12, False
    while pos < riff_end:
        if pos + 8 > riff_end:
            raise _Broken(f"cut chunk header at byte {pos:,}")
        kind = bytes(mv[pos : pos + 4])
        size = int.from_bytes(mv[pos + 4 : pos + 8], "little")
        body = pos + 8
        if body + size > riff_end:
            raise _Broken(f"the {kind!r} chunk at byte {pos:,} runs past the container")
        if kind == b"VP8 ":
            # frame tag (3 bytes: key frame bit, first partition's size), start code 9d 01 2a
            tag = int.from_bytes(mv[body : body + 3], "little")
            if size < 10 or bytes(mv[body + 3 : body + 6]) != b"\x9d\x01\x2a":
                raise _Broken("the VP8 frame header is damaged")
            if 10 + (tag >> 5) > size:
                raise _Broken("the VP8 frame's first partition runs past its chunk")
            image = True
        elif kind == b"VP8L":
            if size < 5 or mv[body] != 0x2F:
                raise _Broken("the VP8L header is damaged")
            image = True
        elif kind == b"ANMF":
            image = True
        pos = body + size + (size & 1)
    if not image:
        raise _Broken("no image data (VP8, VP8L or ANMF chunk)")


def _heif(mv: memoryview) -> None:
    n, pos = len(mv), 0
    seen: set[bytes] = set()
    while pos < n:
        if pos + 8 > n:
            if {b"meta", b"mdat"} <= seen:
                return  # a few bytes after a whole file
            raise _Broken(f"cut box header at byte {pos:,}")
        size = int.from_bytes(mv[pos : pos + 4], "big")
        kind = bytes(mv[pos + 4 : pos + 8])
        if {b"meta", b"mdat"} <= seen and not (kind.isascii() and kind.isalnum()):
            return  # not a box: something after a whole file (decoders ignore it)
        head = 8
        if size == 1:
            if pos + 16 > n:
                raise _Broken(f"cut box header at byte {pos:,}")
            size, head = int.from_bytes(mv[pos + 8 : pos + 16], "big"), 16
        elif size == 0:
            size = n - pos
        if size < head or pos + size > n:
            raise _Broken(f"the {kind!r} box at byte {pos:,} runs past the end of the file")
        seen.add(kind)
        pos += size
    if b"meta" not in seen:
        raise _Broken("no meta box")


def copies(data: bytes, *, thumb_px: int, screen_px: int) -> tuple[Copy, Copy]:
    """The (thumb, screen) copies of a validated original, long edges at most the given pixels.

    Every pixel is decoded here (a JPEG at the screen copy's DCT scale), so this is also the
    full check: a file that does not decode raises ``CorruptImage``. Called with a stored
    original (validated when it came): its pixel count is not limited again.
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
    # The thumbnail from the screen copy's pixels (no second decode): a box reduction by an
    # integer factor first, then a bicubic step of at most 1.5x.
    thumb_img = screen_img.copy()
    thumb_img.thumbnail((thumb_px, thumb_px), Image.Resampling.BICUBIC, reducing_gap=1.5)
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
    # Bilinear: after the decoder's own scaling the step left is small (less than 2x), where
    # Pillow's antialiased triangle filter looks the same as bicubic at about 60 % of its time
    # and this resample is the largest cost after the decode (docs/performance.md).
    img.thumbnail((long_edge, long_edge), Image.Resampling.BILINEAR, reducing_gap=2.0)
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


def _evidence(
    img: Image.Image, raw_exif: bytes | None, ctype: str
) -> tuple[tuple[float, float] | None, datetime | None]:
    """The photo's own position and time from its EXIF, read from the header: a PNG's from its
    ``eXIf`` chunk (Pillow's ``getexif()`` would decode a PNG whose EXIF is not in its header)."""
    try:
        if ctype == "image/png":
            exif = Image.Exif()
            if raw_exif:
                exif.load(raw_exif)
        else:
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
