"""Stored reply audio over HTTP, with Range support so Safari can play and seek it."""

from __future__ import annotations

import re

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from chat.models import Message

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) of a single `bytes=` range, or None when it cannot be satisfied."""
    match = _RANGE.match(header.strip())
    if match is None or not (match.group(1) or match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:  # a suffix range: the last N bytes
        length = int(last)
        return (max(0, size - length), size - 1) if length else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if start <= end and start < size else None


@require_GET
@login_required
def message_audio(request: HttpRequest, pk: str) -> HttpResponse:
    """The WAV of one assistant message: its owner's (or staff's) only; 404 for anything else."""
    messages = Message.objects.all()
    if not request.user.is_staff:  # staff review any transcript's audio in the admin
        messages = messages.filter(conversation__owner_id=request.user.pk)
    try:
        message = messages.get(pk=pk)
    except (Message.DoesNotExist, ValueError):
        raise Http404("No such audio.") from None
    if not message.audio:
        raise Http404("This message has no audio.")
    with message.audio.open("rb") as audio:
        data = audio.read()
    response = _ranged(request.headers.get("Range", ""), data)
    response["Accept-Ranges"] = "bytes"
    response["Content-Type"] = "audio/wav"
    response["Cache-Control"] = "private, max-age=86400"
    return response


def _ranged(header: str, data: bytes) -> HttpResponse:
    size = len(data)
    if not header:
        return HttpResponse(data)
    span = _byte_range(header, size) if header.startswith("bytes=") and "," not in header else None
    if span is None:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    first, last = span
    response = HttpResponse(data[first : last + 1], status=206)
    response["Content-Range"] = f"bytes {first}-{last}/{size}"
    return response
