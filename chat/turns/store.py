"""The database side of a turn: its messages, the LLM history, progress while it streams, the final record.

Each function is one short transaction run in a worker thread, called at the turn's edges and at most
about once a second while it streams, never per audio chunk.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import close_old_connections, transaction
from django.utils import timezone

from chat.models import Agent, Conversation, Message
from chat.protocol import WordTiming
from chat.providers.base import ChatMessage
from chat.services import message_create_user
from chat.turns import audio as audio_store

logger = logging.getLogger(__name__)

# Turn writes run in the thread pool, not Channels' one shared database thread: at a hundred starting
# turns a second, queueing behind every connection's session lookups was most of the time to first audio.
turn_database_call = partial(database_sync_to_async, thread_sensitive=False)

# Messages whose text is worth sending back to the LLM as history.
_HISTORY_STATUSES = (Message.Status.COMPLETE, Message.Status.INTERRUPTED)
_OPEN_STATUSES = (Message.Status.PENDING, Message.Status.STREAMING)


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
    call_seconds: float | None = None  # vendor agent call time (ElevenLabs agent backend)
    words: list[WordTiming] = field(default_factory=list)
    heard_text: str = ""
    error_code: str = ""
    error_message: str = ""
    audio_failed: bool = False
    audio_refused: bool = False  # policy stopped the speech (a budget ran out), not the vendor

    def error(self, code: str, message: str) -> None:
        self.error_code, self.error_message = code, message

    def audio_error(self, code: str, message: str) -> None:
        self.audio_failed = True
        self.error(code, message)

    def audio_refusal(self, code: str, message: str) -> None:
        self.audio_refused = True
        self.error(code, message)


@dataclass(frozen=True)
class TurnStart:
    user_message: Message
    reply: Message
    history: list[ChatMessage]
    voice_id: str  # the conversation's voice as stored now (a user may have picked another meanwhile)


@turn_database_call
def turn_begin(
    *,
    conversation: Conversation,
    agent: Agent,
    text: str,
    greeting: str = "",
    greeting_id: uuid.UUID | None = None,
    context: tuple[str, ...] = (),
) -> TurnStart:
    """Save the user's message (before anything else can fail), open the assistant's and read the history.

    The conversation row itself is created here when this is its first message, so sockets and page
    loads leave no empty conversations behind; its greeting, if it had one, becomes its first message.
    One trip to the database thread: every trip waits its turn behind every other connection's.
    """
    with transaction.atomic():
        if conversation._state.adding:
            conversation.save(force_insert=True)
            if greeting:
                Message.objects.create(
                    conversation=conversation,
                    role=Message.Role.ASSISTANT,
                    text=greeting,
                    status=Message.Status.COMPLETE,
                    greeting_id=greeting_id,
                )
        user_message = message_create_user(conversation=conversation, text=text)
        reply = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING,
            heartbeat_at=timezone.now(),
        )
    history = history_for(conversation=conversation, agent=agent, context=context)
    voice_id = Conversation.objects.filter(pk=conversation.pk).values_list("voice_id", flat=True).first() or ""
    return TurnStart(user_message=user_message, reply=reply, history=history, voice_id=voice_id)


def history_for(*, conversation: Conversation, agent: Agent, context: tuple[str, ...] = ()) -> list[ChatMessage]:
    """The system prompt (with any contextual updates) plus the latest messages within LLM_HISTORY_CHARS."""
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
    system = "\n\n".join(part for part in (agent.system_prompt, *_context_notes(context)) if part)
    return ([ChatMessage(role="system", content=system)] if system else []) + picked


def _context_notes(context: tuple[str, ...]) -> list[str]:
    if not context:
        return []
    return ["Background the user's app sent (not said by the user):\n" + "\n".join(f"- {c}" for c in context)]


@turn_database_call
def turn_progress(*, message: Message, text: str) -> None:
    """Save the reply's text so far and prove a live process is still writing it."""
    Message.objects.filter(pk=message.pk, status=Message.Status.STREAMING).update(
        text=text, heartbeat_at=timezone.now()
    )


@turn_database_call
def turn_finish(*, message: Message, text: str, status: str, record: TurnRecord, audio: audio_store.PcmBuffer) -> None:
    """Record the turn's outcome once: text, status, audio file, timings and cost."""
    message.text = text
    message.status = status
    message.completed_at = timezone.now()
    message.heartbeat_at = None
    message.error_code, message.error_message = record.error_code, record.error_message
    for name in ("llm_first_token_ms", "first_chunk_ms", "tts_first_byte_ms", "first_audio_sent_ms"):
        setattr(message, name, getattr(record, name))
    message.tts_characters = record.tts_characters
    message.tts_request_ids = record.tts_request_ids
    message.call_seconds = record.call_seconds
    message.tts_backend = record.tts_backend
    message.words = [list(word) for word in record.words]
    message.heard_text = record.heard_text
    message.audio_status = _audio_status(record, audio.size)
    if audio.size:
        message.audio_format = f"pcm_{record.sample_rate}"
        message.audio_duration_ms = audio_store.duration_ms(audio.size, record.sample_rate)
        message.audio.save(f"{message.id}.wav", ContentFile(audio.wav(record.sample_rate)), save=False)
    else:
        audio.close()
    message.save()
    changes: dict[str, object] = {"updated_at": timezone.now()}
    if record.tts_backend == Agent.Backend.ELEVENLABS_AGENT and record.tts_request_ids:
        changes["elevenlabs_conversation_id"] = record.tts_request_ids[-1]  # the vendor call, for the admin
    Conversation.objects.filter(pk=message.conversation_id).update(**changes)


def _audio_status(record: TurnRecord, size: int) -> str:
    if record.audio_refused:
        return Message.AudioStatus.BUDGET
    if record.audio_failed:
        return Message.AudioStatus.PARTIAL if size else Message.AudioStatus.FAILED
    return Message.AudioStatus.COMPLETE if size else Message.AudioStatus.NONE


def turns_sweep(*, stale_after: float) -> int:
    """Close replies left open by a process that died: `interrupted`, `server_restarted`, text kept."""
    cutoff = timezone.now() - timedelta(seconds=stale_after)
    orphans = Message.objects.filter(role=Message.Role.ASSISTANT, status__in=_OPEN_STATUSES, heartbeat_at__lt=cutoff)
    return orphans.update(
        status=Message.Status.INTERRUPTED,
        error_code="server_restarted",
        error_message="The server restarted while this reply was being written; what was saved is kept.",
        completed_at=timezone.now(),
        heartbeat_at=None,
    )


@database_sync_to_async
def playback_report_save(
    *, conversation_id: uuid.UUID, message_id: str, first_audible_ms: int | None, underruns: int, heard_ms: int | None
) -> bool:
    """Store what the listener heard on one of this conversation's assistant messages."""
    try:
        message = Message.objects.get(pk=message_id, conversation_id=conversation_id, role=Message.Role.ASSISTANT)
    except (ValueError, ValidationError, Message.DoesNotExist):
        return False
    message.client_first_audible_ms = first_audible_ms
    message.client_underruns = underruns
    fields = ["client_first_audible_ms", "client_underruns"]
    if heard_ms is not None and message.status == Message.Status.INTERRUPTED and message.words:
        message.heard_text = heard_text_at(message.text, message.words, heard_ms)
        fields.append("heard_text")
    message.save(update_fields=fields)
    return True


def heard_text_at(text: str, words: list[list[int]], heard_ms: int) -> str:
    """The displayed text up to the last word that had started playing `heard_ms` into the audio."""
    end = 0
    for _start, stop, start_ms, _end_ms in words:
        if start_ms > heard_ms:
            break
        end = max(end, stop)
    return text[:end].rstrip()


# A Play (on-demand speech) claims its reply with audio_status `pending`; a process that died mid-Play
# leaves that claim, which this long after it is released so the reply can be played again.
PLAY_CLAIM_SECONDS = 600.0


def audio_claims_sweep() -> int:
    cutoff = timezone.now() - timedelta(seconds=PLAY_CLAIM_SECONDS)
    return Message.objects.filter(audio_status=Message.AudioStatus.PENDING, heartbeat_at__lt=cutoff).update(
        audio_status=Message.AudioStatus.NONE, heartbeat_at=None
    )


_sweeper_lock = threading.Lock()
_sweeper: threading.Thread | None = None


def sweeper_start(*, interval: float, stale_after: float) -> None:
    """Start this process's sweeper (once; interval 0: never): at start-up, then every `interval` seconds.

    A thread, not a task: it must run in a process that has no connection yet — the one that replaced a
    crashed server, or its neighbour — so a reply orphaned by a dead process is closed within
    `stale_after + interval` seconds whether anybody is connected or not.
    """
    global _sweeper
    with _sweeper_lock:
        if interval <= 0 or (_sweeper is not None and _sweeper.is_alive()):
            return
        _sweeper = threading.Thread(
            target=_sweep_forever, args=(interval, stale_after), name="turn-sweeper", daemon=True
        )
        _sweeper.start()


def _sweep_forever(interval: float, stale_after: float) -> None:
    pause = threading.Event()
    while True:
        try:
            closed = turns_sweep(stale_after=stale_after)
            audio_claims_sweep()
        except Exception:  # a database hiccup must not end the sweeping for good
            logger.exception("Sweeping orphaned replies failed")
        else:
            if closed:
                logger.warning("Closed %d replies left streaming by a stopped process", closed)
        finally:
            close_old_connections()
        pause.wait(interval)
