"""Template context every page needs."""

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, object]:
    return {"allow_signup": settings.ALLOW_SIGNUP}
