"""The one message catalogue: every text a person reads, Chinese first, English second.

The text lives in gettext ``.po`` files under ``api/i18n/locales/<locale>/LC_MESSAGES/``, read
once at start-up with Babel (``babel.messages.pofile.read_po``); nothing is compiled. A message
id is a stable key (``status.reported``, ``action.accept``, ``side.510904``,
``mechanism.joint_defense``, ``error.invalid_coordinates`` …), never the English text, so the
English can change without touching the Chinese. Placeholders are Python format fields
(``{distance_m}``).

- :func:`t` renders one key: ``t("time.left", left="3小时")``.
- :func:`error_text` renders an API error ``code`` with its ``detail`` in a language.
- :func:`when` writes a time in Asia/Shanghai: ``2026年12月2日 09:30`` or ``12-02 09:30``.
- :func:`export` is the catalogue of a locale as JSON for the browser scripts
  (served at ``/i18n/<locale>.json``).
- :func:`install` registers ``t``, ``when``, ``side_name`` … as Jinja globals.

Other parts of JointGrid add their keys to both ``.po`` files; there is no second catalogue.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Final

import orjson
from babel.dates import format_datetime, get_timezone
from babel.messages.pofile import read_po

from gis.workflow import ACTIONS

LOCALES: Final[tuple[str, ...]] = ("zh_CN", "en")
"""The languages, first is the default: Chinese first."""
DEFAULT: Final[str] = LOCALES[0]
LOCALE_DIR: Final[Path] = Path(__file__).resolve().parent / "locales"
TZ = get_timezone("Asia/Shanghai")
"""Every time a person reads is Beijing time (UTC+8, no daylight saving)."""

# Babel date patterns (CLDR), per locale: "long" 2026年12月2日 09:30, "short" 12-02 09:30.
_PATTERNS: Final[dict[str, dict[str, str]]] = {
    "zh_CN": {"long": "y年M月d日 HH:mm", "short": "MM-dd HH:mm", "date": "y年M月d日"},
    "en": {"long": "d MMM y, HH:mm", "short": "MM-dd HH:mm", "date": "d MMM y"},
}
LIST_SEPARATOR: Final[dict[str, str]] = {"zh_CN": "、", "en": ", "}


class _Missing(dict[str, Any]):
    """Format arguments that raise for a missing field, so a variant that needs it is skipped."""

    def __missing__(self, key: str) -> Any:
        raise KeyError(key)


@cache
def messages(locale: str = DEFAULT) -> dict[str, str]:
    """Every key of ``locale`` and its text, in file order (read once, then cached)."""
    loc = _locale(locale)
    path = LOCALE_DIR / loc / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as f:
        catalog = read_po(f, locale=loc)
    return {str(m.id): str(m.string) for m in catalog if m.id and m.string}


def load() -> None:
    """Read every locale now (at start-up), so a broken ``.po`` file stops the server early."""
    for loc in LOCALES:
        messages(loc)


def _locale(locale: str | None) -> str:
    if not locale:
        return DEFAULT
    text = locale.replace("-", "_")
    if text in LOCALES:
        return text
    lang = text.split("_")[0].lower()
    return next((x for x in LOCALES if x.split("_")[0] == lang), DEFAULT)


def pick_locale(accept_language: str | None, chosen: str | None = None) -> str:
    """The page language: an explicit choice (``?lang=`` or a cookie), else Chinese.

    ``Accept-Language`` is deliberately not followed: the people who work these pages read
    Chinese first, whatever their browser says; English is opt-in.
    """
    return _locale(chosen) if chosen else DEFAULT


def has(key: str, locale: str = DEFAULT) -> bool:
    return key in messages(_locale(locale))


def t(key: str, locale: str = DEFAULT, **params: Any) -> str:
    """The text of ``key`` in ``locale`` with ``params`` filled in.

    Falls back to the Chinese text, then to the key itself (so a missing key shows as such
    rather than as an empty label). A template whose fields are not all given is returned
    unfilled rather than raising.
    """
    loc = _locale(locale)
    text = messages(loc).get(key)
    if text is None:
        text = messages(DEFAULT).get(key, key)
    if not params:
        return text
    try:
        return text.format_map(_Missing(params))
    except (KeyError, IndexError, ValueError):
        return text


def both(key: str, **params: Any) -> tuple[str, str]:
    """The Chinese and the English text of ``key``: for a label with a quieter English line."""
    return t(key, "zh_CN", **params), t(key, "en", **params)


def join(items: Iterable[str], locale: str = DEFAULT) -> str:
    return LIST_SEPARATOR.get(_locale(locale), ", ").join(items)


# -- names -------------------------------------------------------------------------------------


def name(kind: str, code: str | None, locale: str = DEFAULT) -> str:
    """The name of a code of one kind (``status``, ``action``, ``category`` …), or the code."""
    if code is None:
        return t(f"{kind}.none", locale) if has(f"{kind}.none", locale) else "—"
    key = f"{kind}.{code}"
    return t(key, locale) if has(key, DEFAULT) else str(code)


def side_name(code: str | None, locale: str = DEFAULT, form: str = "full") -> str:
    """A side by name, never by its code alone: ``full`` 安居区（四川省遂宁市）, ``short`` 安居区,
    ``label`` 安居区（四川）."""
    if code is None:
        return "—"
    key = f"side.{code}" if form == "full" else f"side.{code}.{form}"
    if has(key, DEFAULT):
        return t(key, locale)
    if has(f"side.{code}", DEFAULT):
        return t(f"side.{code}", locale)
    return t("side.unknown", locale, code=code)


# -- times -------------------------------------------------------------------------------------


def _as_time(value: datetime | str) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def when(value: datetime | str | None, style: str = "long", locale: str = DEFAULT) -> str:
    """A time in Asia/Shanghai: ``long`` 2026年12月2日 09:30, ``short`` 12-02 09:30, ``date``."""
    if value is None or value == "":
        return "—"
    loc = _locale(locale)
    pattern = _PATTERNS[loc].get(style, style)
    numeric = _NUMERIC.get(pattern)
    if numeric is not None:  # digits only: strftime writes the same text 50 times faster
        return _as_time(value).astimezone(TZ).strftime(numeric)
    return str(format_datetime(_as_time(value), pattern, tzinfo=TZ, locale=loc))


_NUMERIC: Final[dict[str, str]] = {"MM-dd HH:mm": "%m-%d %H:%M"}
"""Patterns made only of zero-padded numbers, written with ``strftime`` instead of babel (about
50 us a call, 50 calls a page of the inbox); tests/test_i18n.py checks both agree."""


def iso_local(value: datetime | str | None) -> str:
    """A time as ``YYYY-MM-DDTHH:MM`` in Asia/Shanghai, for ``<input type="datetime-local">``."""
    if value is None or value == "":
        return ""
    return _as_time(value).astimezone(TZ).strftime("%Y-%m-%dT%H:%M")


def span(delta: timedelta, locale: str = DEFAULT) -> str:
    """A length of time, coarse: ``2天3小时``, ``5小时10分``, ``12分钟`` (never negative)."""
    minutes = int(abs(delta.total_seconds()) // 60)
    d, rest = divmod(minutes, 24 * 60)
    h, m = divmod(rest, 60)
    if d:
        return t("time.days_hours", locale, d=d, h=h)
    if h:
        return t("time.hours_minutes", locale, h=h, m=m)
    return t("time.minutes", locale, m=m)


def time_left(due: datetime | str | None, now: datetime, locale: str = DEFAULT) -> str:
    """``剩余 5小时10分`` or ``超期 2天3小时``, or ``未计时`` before dispatch."""
    if due is None or due == "":
        return t("time.no_limit", locale)
    delta = _as_time(due) - now
    if delta.total_seconds() < 0:
        return t("time.overdue", locale, over=span(delta, locale))
    return t("time.left", locale, left=span(delta, locale))


# -- errors ------------------------------------------------------------------------------------

# Detail fields that hold codes of one kind: rendered by name before they fill a template.
_DETAIL_KINDS: Final[dict[str, str]] = {
    "status": "status",
    "action": "action",
    "allowed": "action",
    "roles": "role",
    "missing": "field",
}
_SIDE_FIELDS: Final[frozenset[str]] = frozenset({"side", "sides", "nearest_side"})
_TIME_FIELDS: Final[frozenset[str]] = frozenset({"must_be_after", "due_at"})


def _render_value(code: str, field: str, value: Any, loc: str) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    many = isinstance(value, list | tuple)
    items = list(value) if many else [value]
    if field in _SIDE_FIELDS or (code == "unknown_side" and field == "valid"):
        out = [side_name(str(v), loc, "short") for v in items]
    elif field in _DETAIL_KINDS:
        if field == "allowed":  # in the workflow's order, not the API's alphabetical one
            items = sorted(items, key=lambda a: ACTIONS.index(a) if a in ACTIONS else len(ACTIONS))
        out = [name(_DETAIL_KINDS[field], str(v), loc) for v in items]
    elif code == "unknown_category" and field == "valid":
        out = [f"{name('category', str(v), loc)} {v}" for v in items]
    elif code == "unknown_severity" and field == "valid":
        out = [f"{t(f'severity.{v}.short', loc)} {v}" for v in items]
    elif field in _TIME_FIELDS and isinstance(value, str):
        try:
            return when(value, "long", loc)
        except ValueError:
            return value
    elif isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:g}"
    else:
        out = [str(v) for v in items]
    if many:
        return join(out, loc) if out else t("case.none", loc)
    return out[0]


def _error_params(code: str, detail: Any, loc: str) -> dict[str, Any]:
    if isinstance(detail, list):
        params: dict[str, Any] = {"count": len(detail)}
        if code == "invalid_request":
            fields = [str(d.get("field")) for d in detail if isinstance(d, dict)]
            params["fields"] = join(fields, loc)
        return params
    if not isinstance(detail, Mapping):
        return {}
    params = {k: _render_value(code, k, v, loc) for k, v in detail.items()}
    if code == "import_rejected" and isinstance(detail.get("rejected"), list):
        params["rejected"] = len(detail["rejected"])
    return params


def _swapped(detail: Any) -> bool:
    """An apparent lat/lon swap (as ``gis.location.check_lonlat`` decides it)."""
    if not _numbers(detail):
        return False
    lon, lat = float(detail["lon"]), float(detail["lat"])
    return abs(lat) > 90 and abs(lon) <= 90 and abs(lat) <= 180


def _numbers(detail: Any) -> bool:
    values = [(detail or {}).get("lon"), (detail or {}).get("lat")]
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


# Variants that apply only when a condition on the detail holds (beyond having its fields).
_APPLIES: Final[dict[str, Any]] = {
    "error.invalid_coordinates.swapped": _swapped,
    "error.invalid_coordinates.range": lambda d: _numbers(d) and not _swapped(d),
}


def error_text(code: str, detail: Any = None, locale: str = DEFAULT) -> str:
    """The message for an API error ``code`` with its ``detail``, in ``locale``.

    Each code has templates ``error.<code>.<variant>`` and ``error.<code>``: the first variant
    (in catalogue order) whose fields the detail can fill wins, then the plain ``error.<code>``,
    then ``error.<code>.plain``. Codes in the detail (statuses, actions, sides, roles) are
    rendered by name.
    """
    loc = _locale(locale)
    catalogue = messages(DEFAULT)
    params = _error_params(code, detail, loc)
    prefix = f"error.{code}."
    variants = [k for k in catalogue if k.startswith(prefix) and not k.endswith(".plain")]
    candidates = [*variants, f"error.{code}", f"error.{code}.plain"]
    for key in candidates:
        if key not in catalogue:
            continue
        check = _APPLIES.get(key)
        if check is not None and not check(detail):
            continue
        text = messages(loc).get(key, catalogue[key])
        try:
            return text.format_map(_Missing(params))
        except (KeyError, IndexError, ValueError):
            continue
    return t("error.unknown", loc, code=code)


# -- the browser's copy --------------------------------------------------------------------------


@cache
def export(locale: str = DEFAULT) -> tuple[bytes, str]:
    """The whole catalogue of ``locale`` as JSON (``{"locale", "messages"}``) and its ETag."""
    loc = _locale(locale)
    body = orjson.dumps({"locale": loc, "messages": messages(loc)})
    return body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


def install(env: Any) -> None:
    """Register the catalogue's helpers as Jinja globals on a templates environment."""
    env.globals.update(
        t=t,
        error_text=error_text,
        when=when,
        iso_local=iso_local,
        time_left=time_left,
        side_name=side_name,
        name=name,
        join=join,
        i18n_json_url=json_url,
    )


def json_url(locale: str = DEFAULT) -> str:
    """The URL of the browser's copy of the catalogue, with its content hash (cacheable)."""
    loc = _locale(locale)
    return f"/i18n/{loc}.json?v={export(loc)[1].strip(chr(34))[:10]}"
