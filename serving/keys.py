"""API keys for /v1/: created (the key is shown once), checked, revoked."""
import hashlib
import hmac
import secrets

from django.db import transaction
from django.utils import timezone

from ftplatform.errors import Conflict, ServiceError
from ftplatform.roles import require_permission

from .models import ApiKey, Deployment

KEY_PREFIX = "ftp-"
PREFIX_LENGTH = 12  # "ftp-" and 8 random characters: enough to find a key, nothing to guess it with


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def create_api_key(*, name: str, by, deployment: Deployment | None = None, expires_at=None) -> tuple[ApiKey, str]:
    """A new key: (row, the key itself). The key is returned only here; the row keeps its SHA-256.

    Raises NotAllowed (needs 'serving.add_apikey'), ServiceError (empty name, expiry in the past)."""
    require_permission(by, "serving.add_apikey", "create API keys")
    if not (name or "").strip() or len(name) > 200:
        raise ServiceError("name: 1 to 200 characters (who or what uses the key)", field="name")
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError("expires_at must be in the future", field="expires_at")
    while True:
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        if not ApiKey.objects.filter(prefix=key[:PREFIX_LENGTH]).exists():
            break
    row = ApiKey(name=name.strip(), prefix=key[:PREFIX_LENGTH], key_hash=_digest(key), deployment=deployment,
                 created_by=by, expires_at=expires_at)
    row._history_user = by
    row.save()
    return row, key


def revoke_api_key(key: ApiKey, *, by) -> ApiKey:
    """Revoke ``key`` (it answers 401 from now on). Raises NotAllowed; Conflict when already revoked."""
    require_permission(by, "serving.change_apikey", "revoke API keys")
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is not None:
            raise Conflict(f"API key {key.prefix}… was revoked already")
        key.revoked_at = timezone.now()
        key._history_user = by
        key._change_reason = "revoked"
        key.save(update_fields=["revoked_at"])
    return key


class KeyRefused(Exception):
    """The request's key is missing, unknown, revoked or expired; the message says which (never the key)."""


def authenticate(authorization: str | None) -> ApiKey:
    """The ApiKey of an ``Authorization: Bearer <key>`` header. Raises KeyRefused."""
    scheme, _, key = (authorization or "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        # Named only when it is a scheme word (Token, Basic), never what might be a key sent without "Bearer".
        said = f" (got the scheme '{scheme}')" if key and scheme.isalpha() and len(scheme) <= 10 else ""
        raise KeyRefused(f"You didn't provide an API key{said}. Send it as 'Authorization: Bearer <key>' "
                         "(the openai client's api_key).")
    row = ApiKey.objects.select_related("deployment").filter(prefix=key[:PREFIX_LENGTH]).first()
    # compare_digest: the time taken says nothing about how much of a guessed key was right.
    if row is None or not hmac.compare_digest(row.key_hash, _digest(key)):
        raise KeyRefused(f"Incorrect API key provided: {key[:PREFIX_LENGTH]}…. Ask an engineer for a key "
                         "(admin: Serving › API keys).")
    if row.revoked_at is not None:
        raise KeyRefused(f"The API key {row.prefix}… was revoked on {row.revoked_at:%Y-%m-%d %H:%M} UTC.")
    if row.expires_at is not None and row.expires_at <= timezone.now():
        raise KeyRefused(f"The API key {row.prefix}… expired on {row.expires_at:%Y-%m-%d %H:%M} UTC.")
    return row


def mark_used(key: ApiKey) -> None:
    """Stamp ``last_used_at`` at most once a minute per key (a write per request would cost every request)."""
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() >= 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
