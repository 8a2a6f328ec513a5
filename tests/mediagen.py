"""Photos made for the tests: phone-like JPEGs with EXIF (GPS, maker note, serial), XMP and an
ICC profile, PNG/WebP/HEIC, and hostile files (truncated, polyglot, bomb headers)."""

from __future__ import annotations

import io
import random
import struct
import zlib
from datetime import datetime

from PIL import Image, ImageChops, ImageCms

import gis.photos  # noqa: F401  (registers the HEIF plug-in for saving too)

XMP = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Make="HUAWEI" tiff:Model="VOG-AL00"/>'
    b'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)
MAKER_NOTE = b"HUAWEI\x00\x00" + b"serial=SN-7F3A9C21;" * 8
SERIAL = "SN-7F3A9C21"


def _dms(x: float) -> tuple[float, float, float]:
    d = int(x)
    m = int((x - d) * 60)
    s = round(((x - d) * 60 - m) * 60, 4)
    return (float(d), float(m), s)


def exif(
    *,
    gps: tuple[float, float] | None = None,
    taken: datetime | None = None,
    offset: str | None = None,
    orientation: int | None = None,
    maker_note: bool = True,
) -> Image.Exif:
    """A phone's EXIF block: make, model, serial, maker note, and optionally GPS and time."""
    e = Image.Exif()
    e[0x010F] = "HUAWEI"
    e[0x0110] = "VOG-AL00"
    if orientation:
        e[0x0112] = orientation
    sub: dict[int, object] = {0xA431: SERIAL}
    if maker_note:
        sub[0x927C] = MAKER_NOTE
    if taken is not None:
        sub[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")
    if offset is not None:
        sub[0x9011] = offset
    e[0x8769] = sub
    if gps is not None:
        lon, lat = gps
        e[0x8825] = {
            1: "N" if lat >= 0 else "S",
            2: _dms(abs(lat)),
            3: "E" if lon >= 0 else "W",
            4: _dms(abs(lon)),
        }
    return e


def picture(w: int = 800, h: int = 600, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A picture with some detail (noise over gradients), so it compresses like a photo; the
    same seed gives the same bytes."""
    rng = random.Random(seed)
    noise = Image.frombytes("L", (w, h), rng.randbytes(w * h)).point(lambda v: v // 3)
    grad = Image.linear_gradient("L").resize((w, h))
    img = Image.merge(
        "RGB",
        [
            ImageChops.add(grad, noise),
            ImageChops.add(grad.rotate(90 * (seed % 4)).resize((w, h)), noise),
            ImageChops.subtract(grad, noise),
        ],
    )
    return img.convert(mode) if mode != "RGB" else img


def jpeg(
    w: int = 800,
    h: int = 600,
    *,
    seed: int = 0,
    quality: int = 85,
    gps: tuple[float, float] | None = None,
    taken: datetime | None = None,
    offset: str | None = None,
    orientation: int | None = None,
    icc: bool = True,
    xmp: bool = True,
) -> bytes:
    buf = io.BytesIO()
    params: dict[str, object] = {
        "quality": quality,
        "exif": exif(gps=gps, taken=taken, offset=offset, orientation=orientation),
    }
    if icc:
        params["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    if xmp:
        params["xmp"] = XMP
    picture(w, h, seed=seed).save(buf, "JPEG", **params)
    return buf.getvalue()


def encoded(
    fmt: str, w: int = 320, h: int = 240, *, mode: str = "RGB", seed: int = 0, gps: bool = True
) -> bytes:
    """PNG, WEBP, HEIF or JPEG, with an EXIF block where the format carries one."""
    img = picture(w, h, mode=mode if fmt != "JPEG" else "RGB", seed=seed)
    buf = io.BytesIO()
    params: dict[str, object] = {}
    if gps and fmt in ("JPEG", "PNG", "WEBP", "HEIF"):
        params["exif"] = exif(gps=(105.6, 30.3)).tobytes()
    if fmt == "HEIF":
        params["quality"] = 60
    img.save(buf, fmt, **params)
    return buf.getvalue()


def png_header(w: int, h: int) -> bytes:
    """A PNG whose header declares w x h pixels, with a tiny (wrong) image stream: a bomb's shape."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )


def jpeg_markers(data: bytes) -> list[tuple[int, bytes]]:
    """The marker segments of a JPEG before its image data: (marker, first bytes of payload)."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    out = []
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise AssertionError(f"bad marker at {i}")
        marker = data[i + 1]
        if marker == 0xDA:  # start of scan: metadata is all before it
            break
        size = int.from_bytes(data[i + 2 : i + 4], "big")
        out.append((marker, data[i + 4 : i + 4 + min(size - 2, 32)]))
        i += 2 + size
    return out


def assert_stripped(data: bytes) -> None:
    """No EXIF, XMP, ICC or maker note in a served JPEG, by its bytes and by Pillow's reading."""
    markers = jpeg_markers(data)
    assert [m for m, _ in markers if 0xE1 <= m <= 0xEF] == [], markers  # APP1..APP15
    assert b"Exif" not in data[:4096] and b"http://ns.adobe.com" not in data
    assert b"ICC_PROFILE" not in data and b"HUAWEI" not in data and SERIAL.encode() not in data
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG"
    assert not img.getexif() and "icc_profile" not in img.info and "xmp" not in img.info


def undecodable_png(w: int = 300, h: int = 200) -> bytes:
    """A PNG whose structure is whole (every chunk's CRC right, IEND present) but whose image
    data does not inflate: it passes the upload's quick check and fails the full decode."""
    data = bytearray(encoded("PNG", w, h, gps=True))
    pos = 8
    while True:
        n = int.from_bytes(data[pos : pos + 4], "big")
        if bytes(data[pos + 4 : pos + 8]) == b"IDAT":
            body = pos + 8
            data[body + n // 3 : body + n // 3 + 40] = b"\xff" * 40
            crc = zlib.crc32(bytes(data[pos + 4 : body + n]))
            data[body + n : body + n + 4] = crc.to_bytes(4, "big")
            return bytes(data)
        pos += 12 + n
