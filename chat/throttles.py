"""Abuse limits of the HTTP side: REST API throttles per user, sign-up per address, the log-in lockout page.

Counters live in the default cache (Redis when REDIS_URL is set, so all processes share them). The
log-in lockout itself is django-axes (settings: LOGIN_*); this module only renders its answer.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.exceptions import Throttled
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle


def client_ip(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or the entry TRUSTED_PROXY_COUNT proxies from the end of X-Forwarded-For.

    Only the entries our own proxies appended can be trusted; anything to their left the client may have written.
    """
    count = settings.TRUSTED_PROXY_COUNT
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if count and forwarded:
        return forwarded[-min(count, len(forwarded))]
    return str(request.META.get("REMOTE_ADDR", ""))


class _LiveRate:
    """Reads the rate when a throttle is made, not at import, so changed settings (and tests) take effect."""

    scope: str | None

    def get_rate(self) -> str | None:
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope or "")
        return str(rate) if rate is not None else None


class ApiUserThrottle(_LiveRate, UserRateThrottle):
    """Every REST request of one user (API_THROTTLE_RATE)."""

    scope = "user"


class ApiWriteThrottle(_LiveRate, UserRateThrottle):
    """Requests that change something (create, rename, delete) of one user (API_WRITE_THROTTLE_RATE)."""

    scope = "write"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if request.method in SAFE_METHODS:
            return None
        return super().get_cache_key(request, view)


class SignupThrottle(_LiveRate, SimpleRateThrottle):
    """Accounts created from one address (SIGNUP_THROTTLE_RATE); used by the sign-up page, not the API."""

    scope = "signup"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request)}


def retry_after_seconds(wait: float | None) -> int:
    """Whole seconds for a Retry-After header: rounded up, never 0 (which would invite an instant retry)."""
    return max(1, math.ceil(wait or 1))


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with a stable code and a sentence on 429s."""
    # Imported here: rest_framework.views reads DEFAULT_THROTTLE_CLASSES, which names this module.
    from rest_framework.views import exception_handler

    response = exception_handler(exc, context)
    if isinstance(exc, Throttled) and response is not None:
        wait = retry_after_seconds(getattr(exc, "wait", None))
        response.data = {"code": "rate_limited", "detail": f"Too many requests; try again in {wait} s."}
        response["Retry-After"] = str(wait)
    return response


def signup_refused(request: HttpRequest, form: Any, wait: float | None) -> HttpResponse:
    """The sign-up page again, with the typed user name kept, saying when another account may be made."""
    seconds = retry_after_seconds(wait)
    minutes = math.ceil(seconds / 60)
    form.add_error(
        None,
        f"Too many accounts were created from your network recently. Try again in {minutes} min, "
        "or ask an administrator to create one for you.",
    )
    response = render(request, "registration/signup.html", {"form": form}, status=429)
    response["Retry-After"] = str(seconds)
    return response


def login_locked_out(request: HttpRequest, response: HttpResponse | None, credentials: dict[str, Any]) -> HttpResponse:
    """django-axes' answer to a locked-out log-in: the log-in page, 429, and when to try again."""
    cool_off = settings.AXES_COOLOFF_TIME
    minutes = math.ceil(cool_off.total_seconds() / 60)
    form = AuthenticationForm(request, initial={"username": (credentials or {}).get("username", "")})
    form.errors["__all__"] = form.error_class(
        [
            f"Too many wrong passwords for this account from your network. Log-in is blocked for {minutes} min; "
            "wait and try again, or ask an administrator to unlock it."
        ]
    )
    page = render(
        request,
        "registration/login.html",
        {"form": form, "next": request.POST.get("next") or request.GET.get("next", "")},
        status=429,
    )
    page["Retry-After"] = str(math.ceil(cool_off.total_seconds()))
    return page
