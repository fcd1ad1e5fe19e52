"""The policy a reply's speech passes through: the user's budget before each request, a fair vendor slot around it.

One `LimitsGate` per turn. Kept out of `chat.limits`' own imports because it builds on the relay's
`SpeechGate` (chat/turns), which itself raises this package's `Refusal`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from chat.limits.budget import BudgetView, Reservation, speech_budget, speech_reserve
from chat.limits.slots import tts_slot
from chat.providers.base import SpeechReceipt
from chat.turns.relay import SpeechGate

_background: set[asyncio.Future[Any]] = set()  # settlements that outlive their turn


class LimitsGate(SpeechGate):
    """Budgets (when the TTS backend bills per character) and fair vendor slots for one user's turn.

    Bills are booked in the background, so neither the relay nor an interruption waits for the
    database; a turn that ends normally waits for them before it reports what is left.
    """

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
        self._pending: set[asyncio.Future[None]] = set()
        self._view: BudgetView | None = None  # from the latest reservation...
        self._in_view: set[int] = set()  # ...which counted these reservations (by id) at their full hold
        self._returned = 0  # characters given back since that view

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
        self._view, self._returned = reservation.view, 0
        self._in_view = {id(r) for queue in self._held.values() for r in queue}

    @contextlib.asynccontextmanager
    async def slot(self, on_queued: Callable[[int | None], Awaitable[None]]) -> AsyncIterator[None]:
        async with tts_slot(self.user_id, on_queued=on_queued):
            yield

    async def billed(self, receipt: SpeechReceipt, text: str) -> None:
        held = self._held.get(text)
        if held:
            reservation = held.popleft()
            self._book(reservation.settle(receipt.characters, request_id=receipt.request_id))
            self._give_back(reservation, reservation.characters - receipt.characters)

    async def close(self) -> None:
        """The turn ended: give back every hold whose request never reported a bill, then say what is left."""
        for reservation in [r for queue in self._held.values() for r in queue]:
            self._book(reservation.cancel())
            self._give_back(reservation, reservation.characters)
        self._held.clear()
        if self.closed:
            return
        self.closed = True
        task = asyncio.current_task()
        interrupted = task is not None and task.cancelling() > 0
        if not interrupted:  # nobody is waiting on a stop: book everything, then read the exact figures
            await asyncio.gather(*self._pending)
        if not self.spent or self.on_budget is None:
            return
        if interrupted and self._view is not None:  # what is left, from the last reservation and the refunds since
            await self.on_budget(self._view.give_back(self._returned))
        else:
            await self.on_budget(await speech_budget(self.user_id))

    def _book(self, settling: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(settling)
        for group in (self._pending, _background):
            group.add(task)
            task.add_done_callback(group.discard)

    def _give_back(self, reservation: Reservation, chars: int) -> None:
        if id(reservation) in self._in_view:
            self._returned += chars


def _refund_when_made(reserving: asyncio.Future[Reservation]) -> None:
    if reserving.cancelled() or reserving.exception() is not None:
        return
    refund = asyncio.ensure_future(reserving.result().cancel())
    _background.add(refund)
    refund.add_done_callback(_background.discard)
