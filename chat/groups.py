"""Channels groups that carry what one process knows to the sockets other processes hold.

`user.<id>`: every socket of a user. When a session stops being valid (logout, a password change,
deactivation, deletion) its sockets are told `session.ended` and close with 4001, in every process,
so an open socket cannot keep running (and billing) turns for a session that no longer exists.

`conversation.<id>`: every socket on one conversation. Turn frames go to it as `conversation.frame`
so a second tab or device on the same conversation shows the messages and reply text live.

Group messages cross processes only through a shared channel layer (REDIS_URL); with the in-memory
layer they reach the sockets of this process, which is all there is.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils.crypto import salted_hmac

logger = logging.getLogger(__name__)

SessionEndReason = Literal["logged_out", "password_changed", "deactivated", "deleted"]
# Set on a user instance between pre_save and post_save when the save ends its sessions.
_PENDING_END = "_chat_groups_session_end"


class SessionEnded(TypedDict):
    type: Literal["session.ended"]
    reason: SessionEndReason
    # Digest of the one session that ended (logout), or None when every session of the user did.
    session: str | None


class ConversationFrame(TypedDict):
    type: Literal["conversation.frame"]
    frame: dict[str, Any]
    origin: str  # channel name of the socket that sent it, which skips its own copy


def user_group(user_id: object) -> str:
    return f"user.{user_id}"


def conversation_group(conversation_id: object) -> str:
    return f"conversation.{conversation_id}"


def session_digest(session_key: str | None) -> str | None:
    """A keyed digest of a session key: what group messages carry, so the layer never holds a usable key."""
    if not session_key:
        return None
    return salted_hmac("chat.groups.session", session_key).hexdigest()


def session_ended_applies(message: SessionEnded, session_key: str | None) -> bool:
    """Whether a socket opened with `session_key` must close on this message."""
    return message["session"] is None or message["session"] == session_digest(session_key)


def conversation_frame(frame: dict[str, Any], *, origin: str) -> ConversationFrame:
    return {"type": "conversation.frame", "frame": frame, "origin": origin}


def end_sessions(user_id: object, reason: SessionEndReason, *, session_key: str | None = None) -> None:
    """Close the user's open sockets in every process: all of them, or those of one session."""
    message: SessionEnded = {"type": "session.ended", "reason": reason, "session": session_digest(session_key)}
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(user_group(user_id), message)
    except Exception:
        # The logout or password change itself has happened; a channel layer outage must not undo it.
        logger.exception("Could not tell the sockets of user %s that their session ended (%s)", user_id, reason)


@receiver(user_logged_out, dispatch_uid="chat.groups.logged_out")
def _on_logged_out(sender: type, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    if user is None or user.pk is None:
        return
    # Only this browser's session ended; the user's other devices stay logged in, and so do their sockets.
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if key:
        end_sessions(user.pk, "logged_out", session_key=key)


@receiver(pre_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="chat.groups.user_pre_save")
def _note_session_invalidating_change(
    sender: Any, instance: Any, raw: bool, update_fields: frozenset[str] | None, **kwargs: Any
) -> None:
    """Compare with the stored row: catches every way a password changes (forms, admin, changepassword, code)."""
    setattr(instance, _PENDING_END, None)
    if raw or instance._state.adding or instance.pk is None:
        return
    if update_fields is not None and not {"password", "is_active"} & set(update_fields):
        return  # e.g. the last_login update on every login
    stored = sender._default_manager.filter(pk=instance.pk).values("password", "is_active").first()
    if stored is None:
        return
    if stored["password"] != instance.password:
        # Django invalidates the other sessions (their auth hash no longer matches) on their next request.
        setattr(instance, _PENDING_END, "password_changed")
    elif stored["is_active"] and not instance.is_active:
        setattr(instance, _PENDING_END, "deactivated")


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="chat.groups.user_post_save")
def _end_sessions_after_save(sender: Any, instance: Any, **kwargs: Any) -> None:
    reason: SessionEndReason | None = getattr(instance, _PENDING_END, None)
    if reason is None:
        return
    setattr(instance, _PENDING_END, None)
    user_id = instance.pk
    # After commit: a rolled-back change ends nothing.
    transaction.on_commit(lambda: end_sessions(user_id, reason))


@receiver(post_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="chat.groups.user_deleted")
def _end_sessions_after_delete(sender: Any, instance: Any, **kwargs: Any) -> None:
    user_id = instance.pk
    transaction.on_commit(lambda: end_sessions(user_id, "deleted"))
