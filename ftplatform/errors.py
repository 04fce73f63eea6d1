"""Errors raised by service functions. The edges (API, admin, commands) turn them into
a 400/403/409 response, an admin message, or a CommandError; never a traceback."""
import re

# The folders of an absolute POSIX path ("/srv/ftplatform/var/artifacts/uploads/"), not preceded by
# what would make it part of a URL ("http://host/v1") or a relative path ("a/b").
_SERVER_FOLDERS = re.compile(r"(?<![\w.:/~-])/(?:[^\s'\"/:,;()\[\]{}<>]+/)+")
# A quoted absolute path, as the OS and most libraries quote file names (OSError: "...: '/srv/a b/c'"):
# quoted, its folders may hold spaces ("/Users/Jane Doe/"), which end an unquoted path.
_QUOTED_SERVER_FOLDERS = re.compile(r"""(['"])/(?:[^'"\n]*/)?(?=[^'"\n/]*\1)""")


class ServiceError(Exception):
    """A request that breaks a rule; the message tells the user what to change. HTTP 400.

    ``field``: the request field it concerns ("messages", "price_per_1k_input_tokens"), when one;
    ``position``: where in that field, 1-based (the message of a conversation, the line of a file).
    The edges place the error with these (the API's body, the admin's form row), never by reading the text.
    """

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, position: int | None = None):
        super().__init__(message)
        self.field, self.position = field, position

    def as_dict(self) -> dict:
        """The API's error body: ``detail``, plus ``field`` and ``position`` when known."""
        body = {"detail": str(self)}
        if self.field is not None:
            body["field"] = self.field
        if self.position is not None:
            body["position"] = self.position
        return body


class NotAllowed(ServiceError):
    """The user may not do this (e.g. approve their own example). HTTP 403."""

    status_code = 403


class Conflict(ServiceError):
    """The object changed or is in the wrong state for this action. HTTP 409."""

    status_code = 409


def without_server_paths(text: str) -> str:
    """``text`` (a library's or the OS's error message) with every absolute path cut to its last part,
    e.g. "No such file or directory: '/srv/var/artifacts/uploads/import-3-x/upload'" -> "... 'upload'":
    users see what is wrong, never where the server keeps its files (the log has the whole message)."""
    return _SERVER_FOLDERS.sub("", _QUOTED_SERVER_FOLDERS.sub(r"\1", text))
