"""Policy: whether a turn may start, whether it may keep speaking, and how much a client may ask.

The one place that says yes or no. Transports and turns call these and translate a `Refusal` into a
frame, a status or an HTTP answer; nothing here knows about sockets.

- `message_check(text)`: a user message is valid; `agent_check(agent)`: its agent still answers.
- `speech_reserve(user_id, chars) -> Reservation`, `await reservation.settle(billed, request_id=...)`,
  `speech_budget(user_id) -> BudgetView`: speech budgets in characters (budget.py).
- `async with tts_slot(user_id, on_queued=...)`: fair TTS request slots within the vendor's
  account-wide concurrency limit (slots.py).
- `turn_claim` / `turn_release`, `socket_open` / `socket_touch` / `socket_close` / `socket_count`: one running turn
  per user, a cap on each user's sockets (presence.py).
- `frame_check(size)`, `FrameRate`: what one connection may send (frames.py).
"""

from chat.limits.budget import BudgetView, Reservation, speech_budget, speech_budget_now, speech_reserve
from chat.limits.frames import CLOSE_FRAME_TOO_LARGE, CLOSE_TOO_MANY_FRAMES, FrameRate, frame_check
from chat.limits.presence import (
    CLOSE_TOO_MANY_CONNECTIONS,
    socket_close,
    socket_count,
    socket_open,
    socket_touch,
    too_many_connections,
    turn_claim,
    turn_release,
    turn_replaced,
)
from chat.limits.refusal import Refusal, agent_check, message_check
from chat.limits.slots import tts_slot

__all__ = [
    "CLOSE_FRAME_TOO_LARGE",
    "CLOSE_TOO_MANY_CONNECTIONS",
    "CLOSE_TOO_MANY_FRAMES",
    "BudgetView",
    "FrameRate",
    "Refusal",
    "Reservation",
    "agent_check",
    "frame_check",
    "message_check",
    "socket_close",
    "socket_count",
    "socket_open",
    "socket_touch",
    "speech_budget",
    "speech_budget_now",
    "speech_reserve",
    "too_many_connections",
    "tts_slot",
    "turn_claim",
    "turn_release",
    "turn_replaced",
]
