"""ElevenLabs Agents as a reply backend: an agent built on the vendor's platform writes and speaks each reply.

One `ElevenLabsAgentSession` is one voicechat conversation's call to the vendor. It mints a signed URL
with the official SDK (the API key never leaves the server and never reaches a log line or an error),
opens the vendor's convai WebSocket with `websockets`, and turns each `reply(text)` into the shared
reply events: TextDelta, AudioPart (PCM at `sample_rate`, with the vendor's per-character alignment)
and Correction. The call hangs up after `idle_seconds` without a reply and is made again on the next
one, carrying the conversation so far to the vendor as a `contextual_update`. See docs/agents.md.

* wire.py — the vendor's messages; reply.py — which events belong to a reply and when it is over;
  errors.py — vendor failures as ProviderErrors; session.py — the call itself.
"""

from __future__ import annotations

from chat.providers.elevenlabs_agent.errors import signed_url_error
from chat.providers.elevenlabs_agent.reply import ReplyReceipt
from chat.providers.elevenlabs_agent.session import ElevenLabsAgentSession
from chat.providers.elevenlabs_agent.wire import OVERRIDES

__all__ = ["OVERRIDES", "ElevenLabsAgentSession", "ReplyReceipt", "signed_url_error"]
