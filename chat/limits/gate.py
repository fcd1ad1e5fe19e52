"""The policy a reply's speech passes through: the user's budget before each request, a fair vendor slot around it.

One `LimitsGate` per turn. Kept out of `chat.limits`' own imports because it builds on the relay's
`SpeechGate` (chat/turns), which itself raises this package's `Refusal`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable

from chat.limits.budget import BudgetView, Reservation, speech_budget, speech_reserve
from chat.limits.slots import tts_slot
from chat.providers.base import SpeechReceipt
from chat.turns.relay import SpeechGate

_refunds: set[asyncio.Future[None]] = set()


class LimitsGate(SpeechGate):
    """Budgets (when the TTS backend bills per character) and fair vendor slots for one user's turn."""

    def __init__(
        self,
        user_id: int,
        *,
        metered: bool = True,
        on_budget: Callable[[BudgetView], Awaitable[object]] | None = None,
    ) -> None:
        self.user_id = user_id
        self.metered = metered
        self.on_budget = on_budget  # told what is left, once, at the end of a turn that spent some
        self.spent = False  # something was reserved: the user's budget changed in this turn
        self.closed = False
        # Chunks of equal text hold equal reservations, so any of them settles any such chunk's receipt.
        self._held: defaultdict[str, deque[Reservation]] = defaultdict(deque)

    async def admit(self, text: str) -> None:
        if not self.metered:
            return
        reserving = asyncio.ensure_future(speech_reserve(self.user_id, len(text)))
        try:
            reservation = await asyncio.shield(reserving)
        except asyncio.CancelledError:
            reserving.add_done_callback(_refund_when_made)  # cancelled mid-reservation: give back what it took
            raise
        self.spent = True
        self._held[text].append(reservation)

    @contextlib.asynccontextmanager
    async def slot(self, on_queued: Callable[[int | None], Awaitable[None]]) -> AsyncIterator[None]:
        async with tts_slot(self.user_id, on_queued=on_queued):
            yield

    async def billed(self, receipt: SpeechReceipt, text: str) -> None:
        held = self._held.get(text)
        if held:
            await held.popleft().settle(receipt.characters, request_id=receipt.request_id)

    async def close(self) -> None:
        """The turn ended: give back every reservation whose request never reported a bill, say what is left."""
        held = [reservation for queue in self._held.values() for reservation in queue]
        self._held.clear()
        await asyncio.gather(*(reservation.cancel() for reservation in held))
        if self.closed:
            return
        self.closed = True
        if self.spent and self.on_budget is not None:
            await self.on_budget(await speech_budget(self.user_id))


def _refund_when_made(reserving: asyncio.Future[Reservation]) -> None:
    if reserving.cancelled() or reserving.exception() is not None:
        return
    refund = asyncio.ensure_future(reserving.result().cancel())
    _refunds.add(refund)
    refund.add_done_callback(_refunds.discard)
