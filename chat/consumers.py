"""The WebSocket transport of protocol v1 (DESIGN.md §5): authorize, translate frames, own the turn task.

Policy lives in chat/limits.py and the reply in chat/turns; this module only translates between frames
and those calls. Whatever happens to a connection — a bug in a handler, a disconnect, a crash of the
dispatch loop — its running turn is cancelled (see `__call__`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chat import protocol
from chat.groups import ConversationFrame, SessionEnded, conversation_group, session_ended_applies, user_group
from chat.groups import conversation_frame as shared_frame
from chat.limits import (
    BudgetView,
    FrameRate,
    Refusal,
    frame_check,
    message_check,
    socket_close,
    socket_open,
    socket_touch,
    speech_budget,
    too_many_connections,
    turn_claim,
    turn_release,
    turn_replaced,
)
from chat.limits.gate import LimitsGate
from chat.models import Agent, Conversation
from chat.overrides import CLOSE_REASON, OVERRIDE_REFUSED, session_overrides
from chat.protocol import (
    AlignmentPayload,
    BudgetEvent,
    ClientData,
    ClientFrame,
    ContextualUpdate,
    Feedback,
    FrameError,
    Interrupt,
    PlaybackReport,
    Pong,
    ServerFrame,
    Settings,
    Speak,
    UserActivity,
    UserAudioChunk,
    UserMessage,
    WordTiming,
)
from chat.providers import ReplySession
from chat.services import agent_get, conversation_get, message_feedback_save
from chat.signing import TokenRefused, signed_url_verify, token_from_scope
from chat.turns import Turn, TurnSpec
from chat.turns.backends import agent_session, conversation_history, output_format, reply_providers
from chat.turns.speak import greeting_play, greeting_text, speak_message
from chat.turns.store import playback_report_save
from chat.voices import agent_speaks_breaks, voice_allowed

logger = logging.getLogger(__name__)

PING_INTERVAL_SECONDS = 20.0  # also how often this socket's entry in the socket registry is renewed
# A client may say how it wants the conversation (text only, voice) in its first frame; the greeting
# waits this long for it before it is spoken.
GREETING_WAIT_SECONDS = 0.5
# A refused signed URL or override. The vendor closes with 1008, but Daphne (Autobahn) sends only 1000 and
# 3000-4999 and drops reasons; the error frame before the close says what happened on every server.
CLOSE_REFUSED = 4003
MAX_CONTEXT_UPDATES = 20
SHARE_DRAIN_SECONDS = 1.0  # how long a closing socket waits to share its last frames with other tabs
# The SDKs in voice mode send a microphone frame every 25 ms (40 a second); they are ignored unparsed
# and count as a quarter of a frame against the rate limit, so a voice session stays well within it.
_AUDIO_CHUNK = '{"user_audio_chunk"'
AUDIO_CHUNK_COST = 0.25
MAX_FEEDBACK_EVENTS = 100  # agent_response event ids remembered per socket, for `feedback`
SUBPROTOCOL = "convai"  # @elevenlabs/client asks for it and drops a socket that does not echo it
CLOSE_SESSION_ENDED = 4001
# What the other sockets on a conversation (another tab or device) are shown of a turn: its text, not its audio.
SHARED_FRAMES = frozenset(
    {
        "user_transcript",
        "agent_chat_response_part",
        "agent_response",
        "agent_response_correction",
        "interruption",
        "agent_response_complete",
    }
)


class ConversationConsumer(AsyncWebsocketConsumer):
    """One client connection to one conversation; at most one reply turn runs at a time."""

    conversation: Conversation
    agent: Agent
    ping_interval: float = PING_INTERVAL_SECONDS

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # However the dispatch loop ends (a disconnect, or an exception nobody caught), the turn this
        # connection started must not run on — and bill — for nobody.
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._shutdown()

    async def connect(self) -> None:
        self.event_id = 0
        self.closed = False
        self.turn_task: asyncio.Task[Any] | None = None
        self.ping_task: asyncio.Task[None] | None = None
        self.pings: dict[int, float] = {}
        self.last_rtt_ms: int | None = None
        self.speak = True
        self.binary_audio = False
        self.context: list[str] = []
        self.voice_id = ""
        self.responses: dict[int, str] = {}  # agent_response event_id -> message_id, for feedback
        self.token_refused: TokenRefused | None = None
        self.reply_session: ReplySession | None = None  # an agent that writes and speaks by itself
        self.greeting_pending = False
        self.greeting_override: str | None = None
        self.greeting_shown = ""
        self.greeting_id: uuid.UUID | None = None
        self.groups_joined: list[str] = []
        self.outbox: deque[ConversationFrame] = deque()  # frames for the conversation's other sockets
        self.outbox_ready = asyncio.Event()
        self.outbox_drained = asyncio.Event()
        self.sharer: asyncio.Task[None] | None = None
        self.registered = False
        self.frame_rate = FrameRate.from_settings()
        if not await self._authorize():
            if self.token_refused is None:
                await self.close()  # before accept: the handshake is refused (HTTP 403)
                return
            # A signed URL's holder is told why in a close reason the SDKs surface, not a bare 403.
            await self.accept(self._subprotocol())
            await self.error(self.token_refused.code, self.token_refused.message)
            await self.close(code=CLOSE_REFUSED, reason=self.token_refused.code)
            return
        await self._join_groups()
        await self.accept(self._subprotocol())
        await self._register()
        self.output_format = output_format(self.agent)
        await self._send_metadata()
        self.ping_task = asyncio.create_task(self._ping_forever())
        if self.conversation._state.adding and self.agent.first_message.strip():
            self.greeting_pending = True
            asyncio.get_running_loop().call_later(GREETING_WAIT_SECONDS, self._start_greeting)

    @property
    def user_id(self) -> int:
        return int(self.scope["user"].pk)

    async def _register(self) -> None:
        """Count this socket against the user's cap; the oldest ones past it are told to close."""
        self.registered = True
        for channel in await socket_open(self.user_id, self.channel_name):
            await self.channel_layer.send(channel, {"type": "limits.evicted"})

    def _subprotocol(self) -> str | None:
        return SUBPROTOCOL if SUBPROTOCOL in self.scope.get("subprotocols", []) else None

    @database_sync_to_async
    def _authorize(self) -> bool:
        """Resolve the user, agent and conversation; anything unknown or foreign refuses the handshake."""
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        conversation_id = query.get("conversation_id", [""])[0]
        agent_id = query.get("agent_id", [""])[0]
        token = token_from_scope(self.scope)
        if token is not None:  # a signed URL replaces the cookie (chat/signing.py dropped it) and the Origin
            return self._authorize_signed(token, agent_id=agent_id, conversation_id=conversation_id)
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return False
        try:
            if conversation_id:
                self.conversation = conversation_get(owner=user, conversation_id=conversation_id)
                self.agent = self.conversation.agent
            else:
                # The row is created by the first message: sockets and page loads leave no empty ones.
                self.agent = agent_get(agent_id=agent_id or None)
                self.conversation = Conversation(id=uuid.uuid4(), owner=user, agent=self.agent)
        except (Conversation.DoesNotExist, Agent.DoesNotExist):
            return False
        return True

    def _authorize_signed(self, token: str, *, agent_id: str, conversation_id: str) -> bool:
        try:
            signed = signed_url_verify(token, agent_id=agent_id, conversation_id=conversation_id)
        except TokenRefused as refused:
            self.token_refused = refused
            return False
        self.scope["user"] = signed.user
        self.agent = signed.agent
        self.conversation = signed.conversation or Conversation(id=uuid.uuid4(), owner=signed.user, agent=signed.agent)
        return True

    async def _send_metadata(self) -> None:
        await self.emit(
            {
                "type": "conversation_initiation_metadata",
                "conversation_initiation_metadata_event": {
                    "conversation_id": str(self.conversation.id),
                    "agent_output_audio_format": self.output_format,
                    "user_input_audio_format": "pcm_16000",  # parseable by the SDKs; audio input is ignored
                    "agent_id": str(self.agent.id),
                    "max_message_chars": settings.MAX_MESSAGE_CHARS,
                    "protocol_version": protocol.PROTOCOL_VERSION,
                    "conversation_exists": not self.conversation._state.adding,
                    "speak": self.speak,
                    "binary_audio": self.binary_audio,
                    "speech_budget": (await speech_budget(self.user_id)).as_payload(),
                },
            }
        )

    async def disconnect(self, code: int) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        self.closed = True
        if (ping := getattr(self, "ping_task", None)) is not None:
            ping.cancel()
        if hasattr(self, "turn_task"):
            await self._cancel_turn()
        session, self.reply_session = getattr(self, "reply_session", None), None
        if session is not None:
            await session.aclose()
        await self._stop_sharing()
        groups, self.groups_joined = getattr(self, "groups_joined", []), []
        for group in groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        if getattr(self, "registered", False):
            self.registered = False
            await socket_close(self.user_id, self.channel_name)

    # --- channel layer: what other sockets and processes tell this one (chat/groups.py) -----------
    async def _join_groups(self) -> None:
        """Before accept, so a logout racing the handshake still finds this socket."""
        self.groups_joined = [user_group(self.scope["user"].pk), conversation_group(self.conversation.id)]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)

    async def session_ended(self, message: SessionEnded) -> None:
        if self.closed or not session_ended_applies(message, self.scope["session"].session_key):
            return
        await self.error("session_ended", "Your session ended (logged out or password changed); log in again.")
        self.closed = True
        await self._cancel_turn()
        await self.close(code=CLOSE_SESSION_ENDED)

    async def conversation_frame(self, message: ConversationFrame) -> None:
        if message["origin"] != self.channel_name and not self.closed:
            await self.send(text_data=json.dumps(message["frame"], separators=(",", ":"), ensure_ascii=False))

    # --- client → server ---------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            await self._receive(text_data, bytes_data)
        except Exception:  # a handler bug answers with an error; the socket stays open
            logger.exception("Frame handling failed in conversation %s", self.conversation.id)
            await self.error("internal_error", "That message could not be handled; please try again.")

    async def _receive(self, text_data: str | None, bytes_data: bytes | None) -> None:
        try:
            frame_check(len(text_data) if text_data is not None else len(bytes_data or b""))
            self.frame_rate.take(AUDIO_CHUNK_COST if text_data and text_data.startswith(_AUDIO_CHUNK) else 1.0)
        except Refusal as refusal:
            await self.refuse(refusal)
            return
        if text_data is None:
            await self.error("invalid_message", "Send JSON text frames; binary frames are not part of the protocol.")
            return
        if text_data.startswith(_AUDIO_CHUNK):
            return  # microphone audio: speech input does not exist yet
        try:
            frame = protocol.parse_client_frame(text_data)
        except FrameError as exc:
            await self.error("invalid_message", exc.message)
            return
        await self.dispatch_frame(frame)
        self._start_greeting()  # after the first frame, which may have said how to speak it

    async def dispatch_frame(self, frame: ClientFrame) -> None:
        match frame:
            case UserMessage(text=text):
                await self.on_user_message(text)
            case Interrupt():
                await self._cancel_turn()
            case Pong(event_id=event_id):
                self.on_pong(event_id)
            case UserActivity() | UserAudioChunk():
                pass  # keep-alive; speech input does not exist yet
            case PlaybackReport():
                await self.on_playback_report(frame)
            case ClientData():
                await self.on_client_data(frame)
            case Settings(speak=speak):
                self.speak = speak
            case ContextualUpdate(text=text):
                self.context = [*self.context, text[: settings.MAX_MESSAGE_CHARS]][-MAX_CONTEXT_UPDATES:]
            case Speak(message_id=message_id):
                await self.on_speak(message_id)
            case Feedback():
                await self.on_feedback(frame)

    async def on_client_data(self, frame: ClientData) -> None:
        try:
            overrides = session_overrides(agent=self.agent, data=frame)
        except Refusal as refusal:
            await self.error(refusal.code, refusal.message)
            if refusal.code == OVERRIDE_REFUSED:
                await self.close(code=CLOSE_REFUSED, reason=CLOSE_REASON)
            return
        if overrides.language is not None:
            # This socket's own copy of the agent: an override never reaches the database or other sockets.
            self.agent = copy.copy(self.agent)
            self.agent.language_code = overrides.language
        if overrides.voice_id is not None:
            self.voice_id = overrides.voice_id
            if self.conversation._state.adding and voice_allowed(self.agent, overrides.voice_id):
                self.conversation.voice_id = overrides.voice_id  # a voice the user picked is kept with it
        if frame.text_only is not None:
            self.speak = not frame.text_only
        if frame.speak is not None:
            self.speak = self.speak and frame.speak
        self.binary_audio = frame.binary_audio
        if frame.first_message is not None:
            self.greeting_override = frame.first_message

    def _start_greeting(self) -> None:
        """Show (and speak) the agent's first message on a new conversation, once."""
        if not self.greeting_pending or self.closed or self.turn_task is not None:
            self.greeting_pending = False
            return
        self.greeting_pending = False
        text = greeting_text(self.agent, self.greeting_override)
        if not text:
            return
        self.greeting_shown = text
        self.turn_task = asyncio.create_task(self._run_job(self._greet(text)), name=f"greeting-{self.conversation.id}")

    async def _greet(self, text: str) -> None:
        try:
            tts = reply_providers(agent=self.agent, speak=self.speak).tts
        except Refusal:
            tts = None  # the voice is misconfigured: the greeting is still shown
        greeting = await greeting_play(agent=self.agent, text=text, tts=tts, output=self, voice_id=self.voice_id)
        self.greeting_id = greeting.pk if greeting is not None and greeting.audio else None

    async def on_speak(self, message_id: str) -> None:
        """Play a stored reply that has no audio yet: synthesise it once and keep it."""
        try:
            tts = reply_providers(agent=self.agent, speak=True).tts
        except Refusal as refusal:
            await self.error(refusal.code, refusal.message)
            return
        assert tts is not None
        await self._cancel_turn()
        gate = LimitsGate(self.user_id, metered=tts.metered, on_budget=self._send_budget)
        job = speak_message(
            conversation_id=self.conversation.id,
            message_id=message_id,
            agent=self.agent,
            tts=tts,
            output=self,
            voice_id=self.voice_id or self.conversation.voice_id,
            gate=gate,
        )
        self.turn_task = asyncio.create_task(self._run_job(self._then_close(job, gate)), name=f"speak-{message_id}")

    async def _then_close(self, job: Coroutine[Any, Any, None], gate: LimitsGate) -> None:
        try:
            await job
        finally:
            await asyncio.shield(gate.close())

    async def on_user_message(self, text: object) -> None:
        started_at = time.monotonic()
        try:
            clean = message_check(text)
            session = await self._reply_session()
            providers = None if session is not None else reply_providers(agent=self.agent, speak=self.speak)
        except Refusal as refusal:
            await self.error(refusal.code, refusal.message)
            return
        await self._cancel_turn()  # first, so its release cannot undo the claim below
        replaced = await turn_claim(self.user_id, self.channel_name)
        if replaced is not None:  # the user's turn on another socket, maybe in another process
            await self.channel_layer.send(replaced, {"type": "limits.turn_replaced"})
        spec = TurnSpec(
            conversation=self.conversation,
            agent=self.agent,
            text=clean,
            started_at=started_at,
            speak=self.speak,
            voice_id=self.voice_id,
            breaks=providers is not None
            and providers.tts is not None
            and agent_speaks_breaks(self.agent, providers.tts),
            whole_reply=settings.SPEECH_MODE == "whole_reply",
            greeting=self.greeting_shown,
            greeting_id=self.greeting_id,
            context=tuple(self.context),
        )
        self.context = []
        gate = None
        if providers is None:
            turn = Turn(spec, output=self, session=session)
        else:
            if providers.tts is not None:
                gate = LimitsGate(self.user_id, metered=providers.tts.metered, on_budget=self._send_budget)
            turn = Turn(spec, output=self, llm=providers.llm, tts=providers.tts, gate=gate)
        job = self._turn_then_release(turn, gate)
        self.turn_task = asyncio.create_task(self._run_job(job), name=f"turn-{self.conversation.id}")

    async def _turn_then_release(self, turn: Turn, gate: LimitsGate | None) -> None:
        try:
            await turn.run()
        finally:
            await asyncio.shield(self._turn_ended(gate))

    async def _reply_session(self) -> ReplySession | None:
        """The socket's session with the agent's own backend, made on its first message; None for LLM + TTS."""
        if self.reply_session is None and self.agent.backend != Agent.Backend.LLM_TTS:
            user = self.scope["user"]
            history = await database_sync_to_async(conversation_history)(self.conversation)
            self.reply_session = agent_session(
                agent=self.agent,
                user_name=user.get_username(),
                user_id=str(user.pk),
                history=history,
                sample_rate=int(self.output_format.removeprefix("pcm_")),
            )
        return self.reply_session

    async def _run_job(self, job: Coroutine[Any, Any, object]) -> None:
        """Run a turn, a greeting or a Play; a bug ends it with an error frame, never the socket."""
        try:
            await job
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("A reply failed in conversation %s", self.conversation.id)
            await self.error("internal_error", "The reply failed unexpectedly; please try again.")

    async def _turn_ended(self, gate: LimitsGate | None) -> None:
        """Let go of the user's one running turn; give back speech holds a turn that failed early left."""
        await turn_release(self.user_id, self.channel_name)
        if gate is not None:
            await gate.close()

    async def _send_budget(self, view: BudgetView) -> None:
        await self.emit({"type": "budget", "budget_event": BudgetEvent(**view.as_payload())})

    # --- from other sockets of the same user (channel layer) --------------------------------
    async def limits_evicted(self, event: dict[str, Any]) -> None:
        await self.refuse(too_many_connections())

    async def limits_turn_replaced(self, event: dict[str, Any]) -> None:
        if self.turn_task is not None and not self.turn_task.done():
            await self.refuse(turn_replaced())
            await self._cancel_turn()

    async def refuse(self, refusal: Refusal) -> None:
        """Tell the client what policy refused, and close the socket when the refusal says so."""
        await self.error(refusal.code, refusal.message)
        if refusal.close_code is not None:
            await self.close(code=refusal.close_code)
            self.closed = True  # nothing more is sent on a socket being closed; its disconnect cleans up

    async def _cancel_turn(self) -> None:
        """Stop the running turn and wait until it has closed its upstream requests and saved its text."""
        task, self.turn_task = self.turn_task, None
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def on_feedback(self, frame: Feedback) -> None:
        # The SDKs name the agent_response they rate by its event_id; none means the latest one.
        event_id = frame.event_id if frame.event_id is not None else max(self.responses, default=-1)
        message_id = self.responses.get(event_id)
        saved = message_id is not None and await database_sync_to_async(message_feedback_save)(
            conversation=self.conversation, message_id=message_id, score=frame.score
        )
        if not saved:
            await self.error("invalid_message", "feedback needs the event_id of an agent_response on this socket.")

    def on_pong(self, event_id: int) -> None:
        sent = self.pings.pop(event_id, None)
        if sent is not None:
            self.last_rtt_ms = round((time.monotonic() - sent) * 1000)

    async def on_playback_report(self, report: PlaybackReport) -> None:
        saved = await playback_report_save(
            conversation_id=self.conversation.id,
            message_id=report.message_id,
            first_audible_ms=report.first_audible_ms,
            underruns=report.underruns,
            heard_ms=report.heard_ms,
        )
        if not saved:
            await self.error("invalid_message", "playback_report needs the message_id of a reply in this conversation.")

    # --- server → client (the turn's TurnOutput) ---------------------------------------------
    async def emit(self, frame: ServerFrame) -> int:
        """Send one protocol frame with the connection's next event_id (errors carry none); returns the id."""
        event_id = 0
        if frame["type"] != "error":
            self.event_id += 1
            event_id = protocol.payload_of(frame)["event_id"] = self.event_id
        if frame["type"] == "agent_response" and frame["agent_response_event"]["message_id"]:
            self.responses[event_id] = frame["agent_response_event"]["message_id"]
            if len(self.responses) > MAX_FEEDBACK_EVENTS:
                self.responses.pop(min(self.responses))
        if not self.closed:
            await self.send(text_data=protocol.encode(frame))
        if frame["type"] in SHARED_FRAMES and not protocol.payload_of(frame).get("greeting"):
            await self._share(frame)
        return event_id

    async def _share(self, frame: ServerFrame) -> None:
        """Queue a frame for the conversation's other sockets; the sharer task sends them in order.

        Never in the turn's own task: a cancellation landing inside the channel layer's Redis call can be
        swallowed there (redis-py), and the interrupted turn would then run on to its end.
        """
        self.outbox.append(shared_frame(dict(frame), origin=self.channel_name))
        self.outbox_drained.clear()
        self.outbox_ready.set()
        if self.sharer is None:
            self.sharer = asyncio.create_task(self._share_forever(), name=f"share-{self.conversation.id}")

    async def _stop_sharing(self) -> None:
        """Let the other tabs see how this socket's last turn ended (briefly), then stop the sharer."""
        sharer, self.sharer = getattr(self, "sharer", None), None
        if sharer is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHARE_DRAIN_SECONDS):
                await self.outbox_drained.wait()
        sharer.cancel()
        await asyncio.gather(sharer, return_exceptions=True)

    async def _share_forever(self) -> None:
        group = conversation_group(self.conversation.id)
        while True:
            while self.outbox:
                try:
                    await self.channel_layer.group_send(group, self.outbox.popleft())
                except Exception:  # other tabs miss a frame (and reload it from the API); this turn goes on
                    logger.warning("Could not share a frame of conversation %s", self.conversation.id)
            self.outbox_drained.set()
            self.outbox_ready.clear()
            await self.outbox_ready.wait()

    async def audio(
        self, pcm: bytes, *, message_id: str, alignment: AlignmentPayload | None, words: list[WordTiming] | None
    ) -> None:
        self.event_id += 1
        if self.closed:
            return
        if self.binary_audio:
            if alignment is not None or words:
                text = protocol.alignment_frame(self.event_id, message_id, alignment=alignment, words=words)
                await self.send(text_data=text)
            await self.send(bytes_data=protocol.audio_frame_binary(pcm, self.event_id))
            return
        encoded = base64.b64encode(pcm).decode("ascii")
        await self.send(text_data=protocol.audio_frame_json(encoded, self.event_id, alignment=alignment, words=words))

    async def error(self, code: str, message: str) -> None:
        await self.emit(protocol.error_frame(code, message))

    async def _ping_forever(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.ping_interval)
            sent = time.monotonic()
            event_id = await self.emit({"type": "ping", "ping_event": {"ping_ms": self.last_rtt_ms}})
            await socket_touch(self.user_id, self.channel_name)
            if len(self.pings) >= 10:  # a client that never answers must not grow this dict
                self.pings.pop(min(self.pings))
            self.pings[event_id] = sent
