"""Voice previews served through our server, so a page never fetches from the vendor and never sees a key.

Async views: a preview streams from the vendor's file host while other requests go on (a sync view would
hold Django's one thread for sync code for the whole download). One for users, limited to the voices an
agent offers them, and one for staff in the admin, for any voice of the library.
"""

from __future__ import annotations

import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse

from chat import voices
from chat.models import Agent
from chat.providers import tts_provider
from chat.providers.base import Voice

PREVIEW_CACHE_SECONDS = 3600  # a voice's sample never changes under the same URL


async def agent_voice_preview(request: HttpRequest, pk: uuid.UUID, voice_id: str) -> HttpResponseBase:
    """GET /api/agents/{id}/voices/{voice_id}/preview/: the sample of a voice this agent offers its users."""
    user = await request.auser()
    if not user.is_authenticated:
        return JsonResponse({"detail": "Authentication credentials were not provided."}, status=403)
    voice = await sync_to_async(_offered_voice)(pk, voice_id)
    if voice is None:
        return JsonResponse({"detail": "This agent offers no such voice."}, status=404)
    return await _preview_response(voice)


async def admin_voice_preview(request: HttpRequest, voice_id: str) -> HttpResponseBase:
    """The admin agent form's preview player: any voice of the library, for staff who may see agents."""
    user = await request.auser()
    if not (user.is_active and user.is_staff and await sync_to_async(user.has_perm)("chat.view_agent")):
        return JsonResponse({"detail": "Staff only."}, status=403)
    voice = await sync_to_async(voices.voice_find)(voice_id)
    if voice is None:
        return JsonResponse({"detail": "The voice library has no such voice."}, status=404)
    return await _preview_response(voice)


def _offered_voice(agent_id: uuid.UUID, voice_id: str) -> Voice | None:
    try:
        agent = Agent.objects.get(pk=agent_id, is_active=True)
    except (Agent.DoesNotExist, ValidationError):
        return None
    if voice_id not in voices.agent_voice_ids(agent):
        return None
    return voices.voice_find(voice_id)


async def _preview_response(voice: Voice) -> HttpResponseBase:
    try:
        preview = await voices.preview_open(voice, tts_provider())
    except voices.PreviewUnavailable as exc:
        return JsonResponse({"detail": exc.message}, status=exc.status)
    response = StreamingHttpResponse(preview.body, content_type=preview.content_type)
    if preview.length is not None:
        response["Content-Length"] = str(preview.length)
    response["Cache-Control"] = f"private, max-age={PREVIEW_CACHE_SECONDS}"
    response["Content-Disposition"] = "inline"
    return response


def schema_with_previews(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: describe the preview route, an async view DRF does not see."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    detail = {"application/json": {"schema": {"type": "object", "properties": {"detail": {"type": "string"}}}}}
    result["paths"]["/api/agents/{id}/voices/{voice_id}/preview/"] = {
        "get": {
            "operationId": "agents_voices_preview_retrieve",
            "summary": "A voice's sample, served by this server.",
            "description": (
                "The preview of one of the voices GET /api/agents/{id}/voices/ lists with a preview_url: the "
                "vendor's sample streamed through this server (audio/mpeg), or for eSpeak one synthesised on "
                "the spot (audio/wav). The browser never contacts the vendor."
            ),
            "tags": ["agents"],
            "parameters": [
                {"in": "path", "name": "id", "required": True, "schema": {"type": "string", "format": "uuid"}},
                {"in": "path", "name": "voice_id", "required": True, "schema": {"type": "string"}},
            ],
            "security": [{"cookieAuth": []}],
            "responses": {
                "200": {"description": "The sample.", "content": {"audio/mpeg": binary, "audio/wav": binary}},
                "403": {"description": "Not logged in.", "content": detail},
                "404": {"description": "No such agent, a voice it does not offer, or no preview.", "content": detail},
                "502": {"description": "The vendor's file host failed.", "content": detail},
            },
        }
    }
    return result
