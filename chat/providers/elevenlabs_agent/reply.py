"""One reply's view of the vendor's events: which are its own, what to yield, and when it is over.

The vendor's socket carries one stream of events for the whole call, and marks no reply's end. A reply
owns the events that follow its `user_message`, except those of an earlier reply the vendor was still
sending (it numbers events; an `interruption` names the last one of the reply it cut) and a greeting
it may be speaking on a new call. It is over when its text is complete and its audio has caught up
with the text (the alignment covers it) or has been quiet for `audio_settle_seconds`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chat.providers.base import Alignment, AudioPart, Correction, ReplyEvent, TextDelta
from chat.providers.elevenlabs_agent import errors, wire

logger = logging.getLogger(__name__)

TEXT_EVENTS = ("agent_chat_response_part", "agent_response", "audio")


@dataclass
class ReplyReceipt:
    """Filled in while a reply runs: the vendor's ids and what it billed, for the message's record."""

    conversation_id: str = ""
    vendor_audio_format: str = ""  # what the vendor sent, before conversion to the session's rate
    characters: int = 0  # characters of speech text the vendor spoke (its alignment), else of the reply
    call_seconds: float = 0.0  # vendor call time this reply accounts for, since the previous one ended
    audio_bytes: int = 0  # PCM yielded, at the session's rate
    first_text_at: float | None = None  # time.monotonic() of the reply's first text, and first audio
    first_audio_at: float | None = None
    reconnected: bool = False  # a vendor call was (re)opened for this reply
    corrected: bool = False


@dataclass(frozen=True)
class ReplyTiming:
    response_timeout: float
    stall_seconds: float
    audio_settle_seconds: float
    interrupt_grace_seconds: float
    text_only: bool


@dataclass
class AgentTraits:
    """What the session has learnt about the vendor agent from its earlier replies."""

    parts: bool | None = None  # it streams agent_chat_response_part
    silent: bool = False  # it answered without audio: do not wait for audio again


class Reply:
    """The state of one reply; `apply` each vendor event, yield what it returns, `wait` to know for how long."""

    def __init__(
        self,
        text: str,
        *,
        timing: ReplyTiming,
        traits: AgentTraits,
        receipt: ReplyReceipt,
        to_pcm: Callable[[bytes], bytes],
        floor: int = 0,
        holding: bool = False,
    ) -> None:
        self.text = text
        self.timing, self.traits, self.receipt, self.to_pcm = timing, traits, receipt, to_pcm
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.floor = floor  # vendor events at or below this id belong to an earlier, interrupted reply
        self.last_event_at = time.monotonic()
        self.started = False
        self.stopped = False  # the vendor's `stop` text part arrived
        self.final_text: str | None = None  # the vendor's agent_response
        self.deltas: list[str] = []
        self.spoken: list[str] = []  # speech text of the audio yielded
        self.pending_audio: list[tuple[bytes, Alignment | None]] = []  # audio before this reply's text began
        self.text_done_at: float | None = None
        self.last_audio_at: float | None = None
        self.yielded = False
        self.interrupted = False  # by our user
        self.vendor_interrupted = False
        self.grace_until = 0.0
        self.correction: str | None = None
        self.finished = False
        # The first reply on a call may race the vendor's greeting: its events wait until the vendor echoes
        # our message (user_transcript) or cuts the greeting short, or until `hold_until` (no echo comes).
        self.holding = holding
        self.held: list[dict[str, Any]] = []
        self.hold_until = 0.0

    # --- the session's questions -------------------------------------------------------------
    def wait(self) -> float | None:
        """Seconds to wait for the vendor's next event, or None when the reply is over."""
        now, timing = time.monotonic(), self.timing
        if self.holding and self.held:
            return max(0.0, self.hold_until - now)
        if self.interrupted or self.vendor_interrupted:
            return self.grace_until - now if self.correction is None and self.grace_until > now else None
        if self.text_done_at is None:
            limit = timing.response_timeout if not self.started else timing.stall_seconds
            return max(0.0, self.last_event_at + limit - now)
        if timing.text_only or self._audio_covers_text():
            return None
        if self.last_audio_at is None and not self.traits.silent:
            return max(0.0, self.text_done_at + timing.stall_seconds - now)
        left = max(self.last_audio_at or 0.0, self.text_done_at) + timing.audio_settle_seconds - now
        return left if left > 0 else None

    def timed_out(self) -> list[ReplyEvent]:
        """The wait ran out: the held events after all, the normal end, or (raised) a timeout."""
        if self.holding:
            return self.release()
        if self.interrupted or self.vendor_interrupted or self.text_done_at is not None:
            self.finished = True  # the grace for a correction, or the settling time after the audio, is over
            return []
        raise errors.timeout_error(
            started=self.started,
            response_timeout=self.timing.response_timeout,
            stall_seconds=self.timing.stall_seconds,
        )

    def interrupt(self) -> None:
        self.interrupted = True
        self.grace_until = time.monotonic() + self.timing.interrupt_grace_seconds

    def kept_text(self) -> str:
        if self.correction is not None:
            return self.correction
        return self.final_text or "".join(self.deltas)

    def release(self) -> list[ReplyEvent]:
        """No echo of our message came: what was held is this reply's after all."""
        self.holding = False
        held, self.held = self.held, []
        return [event for message in held for event in self.apply(message)]

    # --- the vendor's events -----------------------------------------------------------------
    def apply(self, message: dict[str, Any]) -> list[ReplyEvent]:
        """One vendor event's effect on the reply, as the events to yield."""
        kind, body = message.get("type"), wire.payload(message)
        event_id = wire.as_int(body.get("event_id"))
        if kind in TEXT_EVENTS:
            if event_id and event_id <= self.floor:
                return []
            if self.holding:
                self.hold_until = self.hold_until or time.monotonic() + self.timing.audio_settle_seconds
                self.held.append(message)
                return []
        match kind:
            case "agent_chat_response_part":
                return self._part(body)
            case "agent_response":
                return self._response(str(body.get("agent_response") or ""))
            case "audio":
                return self._audio(body)
            case "interruption":
                return self._interruption(event_id)
            case "agent_response_correction":
                return self._correction(str(body.get("corrected_agent_response") or ""))
            case "user_transcript" if not self.yielded:
                # The vendor took our message: whatever came before it (a greeting) is not this reply's.
                self.pending_audio.clear()
                self.held.clear()
                self.holding = False
            case "error":
                raise errors.event_error(body)
        return []

    def _part(self, part: dict[str, Any]) -> list[ReplyEvent]:
        self.traits.parts = True
        self.last_event_at = time.monotonic()
        match part.get("type"):
            case "start":
                return self._start()
            case "stop":
                self.stopped = True
                return self._check_text_done()
        events = self._start() if not self.started else []
        return events + self._text(str(part.get("text") or ""))

    def _response(self, text: str) -> list[ReplyEvent]:
        if self.traits.parts and not self.started:
            return []  # a text-part agent begins each reply with a part: this response is an earlier one's
        self.last_event_at = time.monotonic()
        self.final_text = text
        events: list[ReplyEvent] = []
        if not self.traits.parts and not self.deltas:
            events = self._start() + self._text(text)
        return events + self._check_text_done()

    def _text(self, text: str) -> list[ReplyEvent]:
        if not text or self.interrupted:
            return []
        self.deltas.append(text)
        if self.receipt.first_text_at is None:
            self.receipt.first_text_at = time.monotonic()
        return [TextDelta(text)]

    def _check_text_done(self) -> list[ReplyEvent]:
        if self.text_done_at is not None or self.final_text is None or (self.traits.parts and not self.stopped):
            return []
        self.text_done_at = time.monotonic()
        streamed = " ".join("".join(self.deltas).split())
        if self.final_text and streamed != " ".join(self.final_text.split()):
            # The parts and the final text disagree (beyond spacing): the final text is what the vendor keeps.
            self.receipt.corrected = True
            return [Correction(self.final_text)]
        return []

    def _start(self) -> list[ReplyEvent]:
        self.started = True
        parts = [self._audio_part(pcm, alignment) for pcm, alignment in self.pending_audio]
        self.pending_audio.clear()
        return [part for part in parts if part.pcm]

    def _audio(self, body: dict[str, Any]) -> list[ReplyEvent]:
        if self.interrupted:
            return []
        try:
            pcm = base64.b64decode(str(body.get("audio_base_64") or ""), validate=True)
        except ValueError:
            logger.warning("The ElevenLabs agent sent undecodable audio; skipped")
            return []
        self.last_event_at = self.last_audio_at = time.monotonic()
        timing = wire.alignment(body.get("alignment"))
        if not self.started:
            self.pending_audio.append((pcm, timing))  # held until the reply's text shows it is this reply's
            return []
        part = self._audio_part(pcm, timing)
        return [part] if part.pcm else []

    def _audio_part(self, pcm: bytes, timing: Alignment | None) -> AudioPart:
        converted = self.to_pcm(pcm)
        speech = "".join(timing.chars) if timing else ""
        self.spoken.append(speech)
        self.receipt.characters += len(speech)
        self.receipt.audio_bytes += len(converted)
        if converted and self.receipt.first_audio_at is None:
            self.receipt.first_audio_at = time.monotonic()
        return AudioPart(pcm=converted, alignment=timing, text=speech)

    def _audio_covers_text(self) -> bool:
        spoken = "".join(self.spoken)
        text = self.final_text if self.final_text is not None else "".join(self.deltas)
        return bool(spoken) and re.sub(r"\s+", "", spoken) == re.sub(r"\s+", "", text)

    def _interruption(self, event_id: int) -> list[ReplyEvent]:
        self.floor = max(self.floor, event_id)
        self.pending_audio.clear()
        if self.holding:  # the vendor cut its greeting short for our message
            self.held.clear()
            self.holding = False
        elif self.started and not self.interrupted and not self.vendor_interrupted:
            self.vendor_interrupted = True  # the vendor cut this reply itself; wait briefly for its correction
            self.grace_until = time.monotonic() + self.timing.interrupt_grace_seconds
        return []

    def _correction(self, text: str) -> list[ReplyEvent]:
        if not self.started and not self.interrupted:
            return []  # about an earlier reply
        self.correction = text
        self.receipt.corrected = True
        if self.interrupted or self.vendor_interrupted:
            self.finished = True
        return [Correction(text)]


__all__ = ["AgentTraits", "Reply", "ReplyReceipt", "ReplyTiming"]
