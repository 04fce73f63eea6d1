"""Errors raised by service functions. The edges (API, admin, commands) turn them into
a 400/403/409 response, an admin message, or a CommandError; never a traceback."""


class ServiceError(Exception):
    """A request that breaks a rule; the message tells the user what to change. HTTP 400."""

    status_code = 400


class NotAllowed(ServiceError):
    """The user may not do this (e.g. approve their own example). HTTP 403."""

    status_code = 403


class Conflict(ServiceError):
    """The object changed or is in the wrong state for this action. HTTP 409."""

    status_code = 409
