"""The database side of a turn: its messages, the LLM history and the final record.

Each function is one short transaction run in a worker thread, called at the turn's edges only,
never per audio chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from chat import audio as audio_store
from chat.models import Agent, Conversation, Message
from chat.providers.base import ChatMessage
from chat.services import message_create_user

# Turn writes run in the thread pool, not Channels' one shared database thread: at a hundred starting
# turns a second, queueing behind every connection's session lookups was most of the time to first audio.
turn_database_call = partial(database_sync_to_async, thread_sensitive=False)

# Messages whose text is worth sending back to the LLM as history.
_HISTORY_STATUSES = (Message.Status.COMPLETE, Message.Status.INTERRUPTED)


@dataclass
class TurnRecord:
    """What a turn measured and billed, written to the assistant message when the turn ends."""

    sample_rate: int
    tts_backend: str = ""
    llm_first_token_ms: int | None = None
    first_chunk_ms: int | None = None
    tts_first_byte_ms: int | None = None
    first_audio_sent_ms: int | None = None
    tts_characters: int = 0
    tts_request_ids: list[str] = field(default_factory=list)
    error_code: str = ""
    error_message: str = ""
    audio_failed: bool = False

    def error(self, code: str, message: str) -> None:
        self.error_code, self.error_message = code, message

    def audio_error(self, code: str, message: str) -> None:
        self.audio_failed = True
        self.error(code, message)


@turn_database_call
def turn_begin(*, conversation: Conversation, agent: Agent, text: str) -> tuple[Message, Message, list[ChatMessage]]:
    """Save the user's message (before anything else can fail), open the assistant's and read the history.

    One trip to the database thread: every trip waits its turn behind every other connection's.
    """
    with transaction.atomic():
        user_message = message_create_user(conversation=conversation, text=text)
        reply = Message.objects.create(
            conversation=conversation, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING
        )
    return user_message, reply, history_for(conversation=conversation, agent=agent)


def history_for(*, conversation: Conversation, agent: Agent) -> list[ChatMessage]:
    """The system prompt plus the latest messages that fit in LLM_HISTORY_CHARS, oldest first."""
    budget = settings.LLM_HISTORY_CHARS
    rows = (
        Message.objects.filter(conversation=conversation, status__in=_HISTORY_STATUSES)
        .exclude(text="")
        .order_by("-created_at")
        .values_list("role", "text")
    )
    picked: list[ChatMessage] = []
    for role, text in rows.iterator(chunk_size=50):
        if picked and len(text) > budget:
            break
        budget -= len(text)
        picked.append(ChatMessage(role=role, content=text[-settings.LLM_HISTORY_CHARS :]))
    picked.reverse()
    system = [ChatMessage(role="system", content=agent.system_prompt)] if agent.system_prompt else []
    return system + picked


@turn_database_call
def turn_finish(*, message: Message, text: str, status: str, record: TurnRecord, audio: audio_store.PcmBuffer) -> None:
    """Record the turn's outcome once: text, status, audio file, timings and cost."""
    message.text = text
    message.status = status
    message.completed_at = timezone.now()
    message.error_code, message.error_message = record.error_code, record.error_message
    for name in ("llm_first_token_ms", "first_chunk_ms", "tts_first_byte_ms", "first_audio_sent_ms"):
        setattr(message, name, getattr(record, name))
    message.tts_characters = record.tts_characters
    message.tts_request_ids = record.tts_request_ids
    message.tts_backend = record.tts_backend
    message.audio_status = _audio_status(record, audio.size)
    if audio.size:
        message.audio_format = f"pcm_{record.sample_rate}"
        message.audio_duration_ms = audio_store.duration_ms(audio.size, record.sample_rate)
        message.audio.save(f"{message.id}.wav", ContentFile(audio.wav(record.sample_rate)), save=False)
    else:
        audio.close()
    message.save()
    Conversation.objects.filter(pk=message.conversation_id).update(updated_at=timezone.now())


def _audio_status(record: TurnRecord, size: int) -> str:
    if record.audio_failed:
        return Message.AudioStatus.PARTIAL if size else Message.AudioStatus.FAILED
    return Message.AudioStatus.COMPLETE if size else Message.AudioStatus.NONE


@database_sync_to_async
def playback_report_save(
    *, conversation: Conversation, message_id: str, first_audible_ms: int | None, underruns: int
) -> bool:
    """Store what the listener heard on one of this conversation's assistant messages."""
    try:
        updated = Message.objects.filter(pk=message_id, conversation=conversation, role=Message.Role.ASSISTANT).update(
            client_first_audible_ms=first_audible_ms, client_underruns=underruns
        )
    except (ValueError, TypeError, ValidationError):
        return False
    return updated == 1
