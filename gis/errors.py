"""Domain exceptions. Each carries a stable ``code``; ``api/errors.py`` maps codes to HTTP statuses."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class: a message for people, a stable code for programs, and structured detail."""

    code = "domain_error"

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class InvalidInput(DomainError):
    code = "invalid_input"


class InvalidCoordinates(InvalidInput):
    code = "invalid_coordinates"


class UnknownCrs(InvalidInput):
    code = "unknown_crs"


class InvalidGeometry(InvalidInput):
    code = "invalid_geometry"


class GeometryTooLarge(InvalidGeometry):
    code = "geometry_too_large"


class UnknownCategory(InvalidInput):
    code = "unknown_category"


class UnknownSide(InvalidInput):
    code = "unknown_side"


class OutsideServiceArea(DomainError):
    code = "outside_service_area"


class CatalogueError(DomainError):
    """The mechanisms catalogue is malformed; ``detail`` lists every problem found."""

    code = "invalid_catalogue"


class ImportRejected(DomainError):
    """An import file has bad rows; ``detail`` lists them with row numbers."""

    code = "import_rejected"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class IdempotencyConflict(Conflict):
    code = "idempotency_key_reused"


class TransitionNotAllowed(Conflict):
    code = "transition_not_allowed"


class UnknownSeverity(InvalidInput):
    code = "unknown_severity"


class UnsupportedMediaType(DomainError):
    """A body sent in a format the route does not read (e.g. a form where JSON is expected),
    or a photo whose content is not JPEG, PNG, WebP or HEIC (whatever its name or type say)."""

    code = "unsupported_media_type"


class InvalidJson(InvalidInput):
    """A body that is not strict JSON: NaN, Infinity, a lone surrogate, too deep, or malformed."""

    code = "invalid_json"


class InvalidCursor(InvalidInput):
    """A paging cursor this server did not make, or one that was changed."""

    code = "invalid_cursor"


class MediaTooLarge(DomainError):
    """A photo over the byte or pixel limit (a decompression bomb included)."""

    code = "media_too_large"


class TooManyMedia(DomainError):
    """More photos than a case may hold."""

    code = "too_many_media"


class CorruptImage(DomainError):
    """A photo that claims a known format but cannot be decoded whole (truncated, damaged)."""

    code = "corrupt_image"


class UntrustedHost(DomainError):
    """The request's Host is not one this server answers for, so no link may be built from it."""

    code = "untrusted_host"
