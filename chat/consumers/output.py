"""Server → client: protocol frames and audio (the turn's `TurnOutput`), shared frames, keep-alive pings."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time

from chat import protocol
from chat.consumers.base import ConnectionBase
from chat.groups import ConversationFrame, conversation_group
from chat.groups import conversation_frame as shared_frame
from chat.limits import Refusal, socket_touch
from chat.protocol import AlignmentPayload, ServerFrame, WordTiming

logger = logging.getLogger(__name__)

PING_INTERVAL_SECONDS = 20.0  # also how often this socket's entry in the socket registry is renewed
MAX_FEEDBACK_EVENTS = 100  # agent_response event ids remembered per socket, for `feedback`
SHARE_DRAIN_SECONDS = 1.0  # how long a closing socket waits to share its last frames with other tabs
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


class FrameOutput(ConnectionBase):
    """Sends frames with the connection's event ids; never raises into the turn that calls it."""

    ping_interval: float = PING_INTERVAL_SECONDS

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
        if self.sharing and frame["type"] in SHARED_FRAMES and not protocol.payload_of(frame).get("greeting"):
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
                    await self.channel_layer.group_send(group, self._next_shared())
                except Exception:  # other tabs miss a frame (and reload it from the API); this turn goes on
                    logger.warning("Could not share a frame of conversation %s", self.conversation.id)
            self.outbox_drained.set()
            self.outbox_ready.clear()
            await self.outbox_ready.wait()

    def _next_shared(self) -> ConversationFrame:
        """The next frame for other tabs, with the text deltas queued right behind it joined into it.

        While a reply streams faster than the layer carries frames, other tabs get fewer, longer deltas
        (every socket of the conversation, this one included, receives each shared frame).
        """
        shared = self.outbox.popleft()
        part = shared["frame"].get("text_response_part")
        if part is None or part["type"] != "delta":
            return shared
        joined = dict(part)
        while self.outbox and _same_delta(self.outbox[0], joined["message_id"]):
            following = self.outbox.popleft()["frame"]["text_response_part"]
            joined["text"] += following["text"]
            joined["event_id"] = following["event_id"]  # the sender's ids stay increasing
        return {**shared, "frame": {**shared["frame"], "text_response_part": joined}}

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

    async def refuse(self, refusal: Refusal) -> None:
        """Tell the client what policy refused, and close the socket when the refusal says so."""
        await self.error(refusal.code, refusal.message)
        if refusal.close_code is not None:
            await self.close(code=refusal.close_code)
            self.closed = True  # nothing more is sent on a socket being closed; its disconnect cleans up

    async def _ping_forever(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.ping_interval)
            sent = time.monotonic()
            event_id = await self.emit({"type": "ping", "ping_event": {"ping_ms": self.last_rtt_ms}})
            await socket_touch(self.user_id, self.channel_name)
            if len(self.pings) >= 10:  # a client that never answers must not grow this dict
                self.pings.pop(min(self.pings))
            self.pings[event_id] = sent

    def on_pong(self, event_id: int) -> None:
        sent = self.pings.pop(event_id, None)
        if sent is not None:
            self.last_rtt_ms = round((time.monotonic() - sent) * 1000)


def _same_delta(shared: ConversationFrame, message_id: str) -> bool:
    part = shared["frame"].get("text_response_part")
    return part is not None and part["type"] == "delta" and part["message_id"] == message_id
