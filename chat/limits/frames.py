"""Per-connection limits on what a client sends: the size of one frame and how fast frames come."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from django.conf import settings

from chat.limits.refusal import Refusal

CLOSE_FRAME_TOO_LARGE = 4009
CLOSE_TOO_MANY_FRAMES = 4029


def frame_check(size: int) -> None:
    """Refuse (and close) a frame over WS_MAX_FRAME_BYTES: no protocol frame of ours comes near it."""
    limit = settings.WS_MAX_FRAME_BYTES
    if size > limit:
        raise Refusal(
            "frame_too_large",
            f"That frame has {size:,} bytes; frames are limited to {limit:,}. Send shorter messages.",
            close_code=CLOSE_FRAME_TOO_LARGE,
        )


class FrameRate:
    """A token bucket per connection: `burst` frames at once, refilled at `rate` a second.

    A frame over the rate is refused with `rate_limited`; a client that sends another whole burst while
    every frame is being refused is not listening, and the refusal carries close code 4029.
    """

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.refused_in_a_row = 0
        self.updated = clock()

    @classmethod
    def from_settings(cls) -> FrameRate:
        return cls(settings.WS_FRAMES_PER_SECOND, settings.WS_FRAME_BURST)

    def take(self, cost: float = 1.0) -> None:
        """Count one frame (a cheap one costs less); raise Refusal when it is over the rate."""
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            self.refused_in_a_row = 0
            return
        self.refused_in_a_row += 1
        wait = math.ceil((cost - self.tokens) / self.rate * 10) / 10
        if self.refused_in_a_row > self.burst:
            raise Refusal(
                "rate_limited",
                "Too many frames, still coming after being refused; the connection is closed. Reload to reconnect.",
                retry_after=wait,
                close_code=CLOSE_TOO_MANY_FRAMES,
            )
        raise Refusal(
            "rate_limited",
            f"Too many frames at once; that one was ignored. Wait {wait:g} s before sending again.",
            retry_after=wait,
        )
