"""API keys for the ElevenLabs-compatible HTTP API: what an SDK sends as `xi-api-key`.

A key is 32 random bytes shown once at creation; only its SHA-256 is stored (a fast hash is enough for
a secret this long, and it lets a request find its key with one indexed lookup). Keys authenticate
the vendor-shaped endpoints only (get-signed-url, the transcript API), never the page or /api/.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from chat.models import ApiKey

KEY_PREFIX = "vc_"
HEADER = "xi-api-key"
# Writing last_used_at on every request would make each API call a write; a minute's precision is plenty.
LAST_USED_PRECISION = timedelta(minutes=1)


class ApiKeyLimitReached(Exception):
    pass


def _digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(*, user: User, name: str) -> tuple[ApiKey, str]:
    """A new key for `user`; returns the record and the raw key, which is never retrievable again."""
    if ApiKey.objects.filter(user=user).count() >= settings.MAX_API_KEYS_PER_USER:
        raise ApiKeyLimitReached(
            f"You already have {settings.MAX_API_KEYS_PER_USER} API keys; revoke one you no longer use."
        )
    key = ApiKey(user=user, name=name.strip()[:100])
    raw_key = api_key_assign(key)
    key.save()
    return key, raw_key


def api_key_assign(key: ApiKey) -> str:
    """Give an unsaved key its secret; returns the raw key (the admin's add form uses this too)."""
    raw_key = KEY_PREFIX + secrets.token_urlsafe(32)
    key.prefix, key.digest = raw_key[:10], _digest(raw_key)
    return raw_key


def api_key_user(raw_key: str) -> User | None:
    """The active user a raw key belongs to, recording its use; None for unknown or revoked keys."""
    if not raw_key.startswith(KEY_PREFIX):
        return None
    key = ApiKey.objects.select_related("user").filter(digest=_digest(raw_key), user__is_active=True).first()
    if key is None:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_PRECISION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key.user


def api_key_revoke(*, user: User, key_id: int) -> bool:
    deleted, _ = ApiKey.objects.filter(user=user, pk=key_id).delete()
    return deleted > 0


class XiApiKeyAuthentication(authentication.BaseAuthentication):
    """DRF authentication by the `xi-api-key` header, as the ElevenLabs SDKs send it. No CSRF: no cookie."""

    def authenticate(self, request: Request) -> tuple[User, None] | None:
        raw_key = request.headers.get(HEADER)
        if raw_key is None:
            return None
        user = api_key_user(raw_key.strip())
        if user is None:
            # The vendor's error body, so SDK code that reads detail.status keeps working.
            message = "Invalid API key: create one on your API keys page (/accounts/api-keys/)."
            raise exceptions.AuthenticationFailed({"detail": {"status": "invalid_api_key", "message": message}})
        return user, None

    def authenticate_header(self, request: Request) -> str:
        return HEADER  # makes DRF answer 401 (not 403) when no credentials came


class XiApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "chat.api_keys.XiApiKeyAuthentication"
    name = "xiApiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": HEADER}
