"""Storage's own errors: the database is down, or every connection stayed busy (HTTP 503)."""

from __future__ import annotations

from gis.errors import DomainError


class Unavailable(DomainError):
    """A dependency (the database) is down; the caller may retry later."""

    code = "service_unavailable"
    retry_after_s = 5  # the Retry-After of the 503


class DatabaseUnavailable(Unavailable):
    """The database cannot be reached: connecting failed, or the connection broke."""

    code = "database_unavailable"


class Overloaded(Unavailable):
    """The database answers, but every connection stayed busy for the whole wait: too many
    requests at once. Not an outage; retrying shortly usually succeeds."""

    code = "overloaded"
    retry_after_s = 2
