"""HTML pages: the chat app shell and sign-up. Everything else the page needs comes from the API."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie

from chat.api_keys import ApiKeyLimitReached, api_key_create, api_key_revoke
from chat.forms import ApiKeyForm, SignupForm
from chat.models import Agent, ApiKey, Conversation
from chat.providers import tts_provider
from chat.serializers import AgentSerializer
from chat.services import agent_default, agent_list, conversation_get, conversation_latest
from chat.throttles import SignupThrottle, signup_refused
from chat.turns.backends import output_format

WS_PATH = "/v1/convai/conversation"


@login_required
@ensure_csrf_cookie
def index(request: HttpRequest, conversation_id: uuid.UUID | None = None) -> HttpResponse:
    """The chat page; `/c/<id>/` opens one of the user's conversations (anyone else's is a 404)."""
    conversation = None
    if conversation_id is not None:
        try:
            conversation = conversation_get(owner=request.user, conversation_id=conversation_id)
        except Conversation.DoesNotExist:
            # Rendered here, not raised: with DEBUG on, Django would answer a raised Http404 with its
            # technical page, and a mistyped link is an everyday event, not a routing bug to debug.
            return render(request, "404.html", status=404)
    return render(request, "chat/index.html", {"config": _client_config(request, conversation)})


def _client_config(request: HttpRequest, conversation: Conversation | None) -> dict[str, Any]:
    """What the browser client needs at start; the CSRF token travels in its cookie."""
    latest = None if conversation else conversation_latest(owner=request.user)
    return {
        "conversation_id": str(conversation.id) if conversation else None,
        "latest_conversation_id": str(latest.id) if latest else None,
        "ws_path": WS_PATH,
        "max_message_chars": settings.MAX_MESSAGE_CHARS,
        "agents": AgentSerializer(agent_list(), many=True).data,
        "username": request.user.get_username(),
        # The page makes its audio context at this rate while it loads, before the socket announces it.
        "audio_format": _landing_format(conversation or latest),
        "login_url": resolve_url(settings.LOGIN_URL),
    }


def _landing_format(conversation: Conversation | None) -> str:
    """The PCM format of the agent the page opens with (its conversation's, else the default one)."""
    try:
        agent = conversation.agent if conversation else agent_default()
    except Agent.DoesNotExist:
        return tts_provider().output_format
    return output_format(agent)


def signup(request: HttpRequest) -> HttpResponse:
    """Open registration, switched off with ALLOW_SIGNUP=false (then the page does not exist)."""
    if not settings.ALLOW_SIGNUP:
        raise Http404("Sign-up is closed.")
    if request.user.is_authenticated:
        return redirect("chat:index")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        throttle = SignupThrottle()  # counts accounts made, so mistyped forms do not use up the allowance
        if not throttle.allow_request(request, None):  # type: ignore[arg-type]  # it reads only request.META
            return signup_refused(request, form, throttle.wait())
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chat:index")
    return render(request, "registration/signup.html", {"form": form})


@login_required
@never_cache  # the page shows a new key once; no cache may keep it
def api_keys(request: HttpRequest) -> HttpResponse:
    """The user's keys for the ElevenLabs SDKs (`xi-api-key`): create one (shown once) or revoke one."""
    user: Any = request.user
    form = ApiKeyForm(request.POST if request.POST.get("action") == "create" else None)
    new_key = None
    if request.method == "POST" and request.POST.get("action") == "revoke":
        key_id = request.POST.get("key_id", "")
        if key_id.isdigit():
            api_key_revoke(user=user, key_id=int(key_id))
        return redirect("api_keys")
    if request.method == "POST" and form.is_valid():
        try:
            _, new_key = api_key_create(user=user, name=form.cleaned_data["name"])
        except ApiKeyLimitReached as exc:
            form.add_error(None, str(exc))
        else:
            form = ApiKeyForm()
    context = {"form": form, "new_key": new_key, "keys": ApiKey.objects.filter(user=user)}
    return render(request, "registration/api_keys.html", context)
