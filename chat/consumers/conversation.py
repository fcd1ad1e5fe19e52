"""Client → server: frames parsed, policy asked, one task per turn (or greeting, or Play) owned.

Policy lives in chat/limits.py and the reply in chat/turns; this module only translates between frames
and those calls. Whatever happens to a connection — a bug in a handler, a disconnect, a crash of the
dispatch loop — its running turn is cancelled (see `__call__`).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Coroutine
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chat import protocol
from chat.consumers.events import ChannelEvents
from chat.consumers.handshake import Handshake
from chat.limits import (
    BudgetView,
    Refusal,
    agent_check,
    frame_check,
    message_check,
    socket_close,
    socket_count,
    speech_budget,
    turn_claim,
    turn_release,
)
from chat.limits.gate import LimitsGate
from chat.models import Agent, Conversation
from chat.overrides import CLOSE_REASON, OVERRIDE_REFUSED, session_overrides
from chat.protocol import (
    BudgetEvent,
    ClientData,
    ClientFrame,
    ContextualUpdate,
    Feedback,
    FrameError,
    Interrupt,
    PlaybackReport,
    Pong,
    Settings,
    Speak,
    UserActivity,
    UserAudioChunk,
    UserMessage,
)
from chat.providers import ReplySession
from chat.services import message_feedback_save
from chat.turns import Turn, TurnSpec
from chat.turns.backends import agent_session, conversation_history, output_format, reply_providers
from chat.turns.speak import greeting_play, greeting_text, speak_message
from chat.turns.store import playback_report_save
from chat.voices import agent_default_voice_id, agent_speaks_breaks, voice_allowed

logger = logging.getLogger(__name__)

# A client may say how it wants the conversation (text only, voice) in its first frame; the greeting
# waits this long for it before it is spoken.
GREETING_WAIT_SECONDS = 0.5
# A refused signed URL or override. The vendor closes with 1008, but Daphne (Autobahn) sends only 1000 and
# 3000-4999 and drops reasons; the error frame before the close says what happened on every server.
CLOSE_REFUSED = 4003
MAX_CONTEXT_UPDATES = 20
# The SDKs in voice mode send a microphone frame every 25 ms (40 a second); they are ignored unparsed
# and count as a quarter of a frame against the rate limit, so a voice session stays well within it.
_AUDIO_CHUNK = '{"user_audio_chunk"'
AUDIO_CHUNK_COST = 0.25


class ConversationConsumer(ChannelEvents, Handshake):
    """One client connection to one conversation; at most one reply turn runs at a time."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # However the dispatch loop ends (a disconnect, or an exception nobody caught), the turn this
        # connection started must not run on — and bill — for nobody.
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._shutdown()

    async def connect(self) -> None:
        self.reset_state()
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
            if self.conversation._state.adding and voice_allowed(self.agent, overrides.voice_id):
                # A voice the user picked for a conversation not created yet is its voice, kept with it at
                # creation; not a socket override, so a later pick (PATCH) reaches this socket's turns too.
                default = overrides.voice_id == agent_default_voice_id(self.agent)
                self.conversation.voice_id = "" if default else overrides.voice_id
                self.voice_id = ""
            else:
                self.voice_id = overrides.voice_id
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
        voice_id = self.voice_id or self.conversation.voice_id
        greeting = await greeting_play(agent=self.agent, text=text, tts=tts, output=self, voice_id=voice_id)
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
            voice_id=self.voice_id or await self._stored_voice(),
            gate=gate,
        )
        self.turn_task = asyncio.create_task(self._run_job(self._then_close(job, gate)), name=f"speak-{message_id}")

    async def _stored_voice(self) -> str:
        """The conversation's voice as stored now: a PATCH may have picked another since the socket opened."""
        voices = Conversation.objects.filter(pk=self.conversation.pk).values_list("voice_id", flat=True)
        return await voices.afirst() or ""

    async def _then_close(self, job: Coroutine[Any, Any, None], gate: LimitsGate) -> None:
        try:
            await job
        finally:
            await asyncio.shield(gate.close())

    async def on_user_message(self, text: object) -> None:
        started_at = time.monotonic()
        try:
            clean = message_check(text)
            agent_check(self.agent)
            session = await self._reply_session()
            providers = None if session is not None else reply_providers(agent=self.agent, speak=self.speak)
        except Refusal as refusal:
            await self.error(refusal.code, refusal.message)
            return
        await self._cancel_turn()  # first, so its release cannot undo the claim below
        replaced = await turn_claim(self.user_id, self.channel_name)
        if replaced is not None:  # the user's turn on another socket, maybe in another process
            await self.channel_layer.send(replaced, {"type": "limits.turn_replaced"})
        # Only the owner's sockets can show a conversation: with no other socket open, nobody is there to
        # share this turn's frames with (on the in-memory layer each share cost a scan of every channel).
        # A tab opened while the turn runs reads its text from the API (saved every second) until the next.
        self.sharing = await socket_count(self.user_id) > 1
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
            # An ElevenLabs agent speaks on the vendor's bill too: the same per-user speech budget applies.
            gate = LimitsGate(self.user_id, on_budget=self._send_budget)
            turn = Turn(spec, output=self, session=session, gate=gate)
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

    async def on_feedback(self, frame: Feedback) -> None:
        # The SDKs name the agent_response they rate by its event_id; none means the latest one.
        event_id = frame.event_id if frame.event_id is not None else max(self.responses, default=-1)
        message_id = self.responses.get(event_id)
        saved = message_id is not None and await database_sync_to_async(message_feedback_save)(
            conversation=self.conversation, message_id=message_id, score=frame.score
        )
        if not saved:
            await self.error("invalid_message", "feedback needs the event_id of an agent_response on this socket.")

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
