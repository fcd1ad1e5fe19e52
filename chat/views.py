"""HTML pages: the chat app shell and sign-up. Everything else the page needs comes from the API."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import ensure_csrf_cookie

from chat.models import Agent, Conversation
from chat.serializers import AgentSerializer


@login_required
@ensure_csrf_cookie
def index(request: HttpRequest, conversation_id: uuid.UUID | None = None) -> HttpResponse:
    """The chat page; `/c/<id>/` opens one of the user's conversations (anyone else's is a 404)."""
    if (
        conversation_id is not None
        and not Conversation.objects.filter(pk=conversation_id, owner_id=request.user.pk).exists()
    ):
        raise Http404("No such conversation.")
    config = {
        "conversation_id": str(conversation_id) if conversation_id else None,
        "ws_path": "/v1/convai/conversation",
        "max_message_chars": settings.MAX_MESSAGE_CHARS,
        "agents": AgentSerializer(Agent.objects.filter(is_active=True).order_by("-is_default", "name"), many=True).data,
        "username": request.user.get_username(),
    }
    return render(request, "chat/index.html", {"config": config})


def signup(request: HttpRequest) -> HttpResponse:
    """Open registration, switched off with ALLOW_SIGNUP=false (then the page does not exist)."""
    if not settings.ALLOW_SIGNUP:
        raise Http404("Sign-up is closed.")
    if request.user.is_authenticated:
        return redirect("chat:index")
    form: UserCreationForm[User] = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chat:index")
    return render(request, "registration/signup.html", {"form": form})
