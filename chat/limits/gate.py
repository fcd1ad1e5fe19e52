"""The policy a reply's speech passes through: the user's budget before each request, a fair vendor slot around it.

One `LimitsGate` per turn. Kept out of `chat.limits`' own imports because it builds on the relay's
`SpeechGate` (chat/turns), which itself raises this package's `Refusal`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from chat.limits.budget import BudgetView, Reservation, speech_budget, speech_reserve_block, speech_settle_turn
from chat.limits.slots import tts_slot
from chat.providers.base import SpeechReceipt
from chat.turns.relay import SpeechGate

logger = logging.getLogger(__name__)

# Characters a reply reserves at a time: a typical spoken reply needs one or two blocks, so a turn costs a
# write or two instead of two per sentence (at a hundred streams on SQLite that was most of the CPU).
BLOCK_CHARS = 1000
_background: set[asyncio.Future[Any]] = set()  # settlements that outlive their turn


class LimitsGate(SpeechGate):
    """Budgets (when the TTS backend bills per character) and fair vendor slots for one user's turn.

    Chunks are admitted against a block reserved in the database (exact across processes: the block is
    taken with a conditional UPDATE); the turn's bills are settled in one transaction when it ends,
    each vendor request id once, and what the blocks did not use is given back. An interrupted turn
    does not wait for that booking; one that ends normally does, then reports what is left.
    """

    def __init__(
        self,
        user_id: int,
        *,
        metered: bool = True,
        on_budget: Callable[[BudgetView], Awaitable[object]] | None = None,
        block_chars: int = BLOCK_CHARS,
    ) -> None:
        self.user_id = user_id
        self.metered = metered
        self.on_budget = on_budget  # told what is left, once, at the end of a turn that spent some
        self.block_chars = block_chars
        self.closed = False
        self._reservations: list[Reservation] = []
        self._free = 0  # reserved characters no chunk has taken yet
        self._charges: list[tuple[str, int]] = []  # (vendor request id, characters billed)
        self._unbilled = 0  # billed characters that came without a request id
        self._billed_total = 0
        self._view: BudgetView | None = None  # what was left after the latest block
        self._first_block: asyncio.Future[Reservation] | None = None  # reserved before the first chunk asks
        self._asked = False  # a chunk has asked to be spoken

    @property
    def spent(self) -> bool:
        """A chunk asked for speech and characters are held for the turn (a block reserved early, for a reply
        that then never spoke, does not count)."""
        return self._asked and bool(self._reservations)

    def prepare(self) -> None:
        """Reserve the reply's first block now, while the LLM writes the first sentence, so that the sentence
        does not wait for a trip to the database on its way to the vendor (under load, that trip was the
        longest part of it). With less than a block left, nothing is held and the first chunk asks for what
        it needs."""
        if self.metered and not self.closed and self._first_block is None and not self._reservations:
            self._first_block = asyncio.ensure_future(speech_reserve_block(self.user_id, 0, self.block_chars))

    async def prepared(self) -> None:
        """Wait until the block `prepare` asked for has come back from the database (or failed); it stays
        the turn's, for the first chunk to take."""
        if self._first_block is not None:
            await asyncio.wait([self._first_block])

    async def admit(self, text: str) -> None:
        if self._first_block is not None:
            await self._take_first_block()
        self._asked = self._asked or self.metered
        if not self.metered or len(text) <= self._free:
            self._free -= len(text) if self.metered else 0
            return
        need = len(text) - self._free
        reserving = asyncio.ensure_future(speech_reserve_block(self.user_id, need, self.block_chars))
        try:
            reservation = await asyncio.shield(reserving)
        except asyncio.CancelledError:
            reserving.add_done_callback(self._keep_for_settling)  # it still counts until the turn settles
            raise
        self._keep(reservation)
        self._free -= len(text)

    async def _take_first_block(self) -> None:
        first, self._first_block = self._first_block, None
        assert first is not None
        try:
            self._keep(await asyncio.shield(first))
        except asyncio.CancelledError:
            first.add_done_callback(self._keep_for_settling)  # it still counts until the turn settles
            raise
        except Exception:  # the database failed: the chunk asks again below, and that answer stands
            logger.warning("Could not reserve the first speech block for user %s", self.user_id, exc_info=True)

    @contextlib.asynccontextmanager
    async def slot(self, on_queued: Callable[[int | None], Awaitable[None]]) -> AsyncIterator[None]:
        async with tts_slot(self.user_id, on_queued=on_queued):
            yield

    async def billed(self, receipt: SpeechReceipt, text: str) -> None:
        if not self.metered:
            return
        # A request cut off before the vendor answered carries no bill, but the vendor had its text:
        # count it, so the budget errs on the operator's side.
        characters = receipt.characters or (0 if receipt.request_id else len(text))
        self._billed_total += characters
        if receipt.request_id:
            self._charges.append((receipt.request_id, characters))
        else:
            self._unbilled += characters

    async def close(self) -> None:
        """The turn ended: settle what it billed against what it reserved, then say what is left."""
        if self.closed:
            return
        first, self._first_block = self._first_block, None
        if first is not None:  # reserved for a reply that never spoke: settled with the rest, or given back
            if first.done():
                self._keep_for_settling(first)
            else:
                first.add_done_callback(self._keep_for_settling)
        self.closed = True
        settling = asyncio.ensure_future(speech_settle_turn(self._reservations, self._charges, self._unbilled))
        _background.add(settling)
        settling.add_done_callback(_background.discard)
        task = asyncio.current_task()
        interrupted = task is not None and task.cancelling() > 0
        if not self.spent or self.on_budget is None:
            return
        if interrupted and self._view is not None:  # nobody waits on a stop: the figure from the last block
            reserved = sum(r.characters for r in self._reservations)
            await self.on_budget(self._view.give_back(reserved - self._billed_total))
            return
        await asyncio.shield(settling)
        if self._view is not None and not any(r.counted for r in self._reservations):
            # Unlimited on an uncapped site: what is left does not depend on the bill (no reads).
            await self.on_budget(self._view)
            return
        await self.on_budget(await speech_budget(self.user_id))

    def _keep(self, reservation: Reservation) -> None:
        if not reservation.characters:  # nothing was held (less than a block was left)
            return
        self._reservations.append(reservation)
        self._free += reservation.characters
        self._view = reservation.view

    def _keep_for_settling(self, reserving: asyncio.Future[Reservation]) -> None:
        """A block that arrived after its turn was cancelled: keep it for the settlement, or give it back."""
        if reserving.cancelled() or reserving.exception() is not None or not reserving.result().characters:
            return
        if not self.closed:
            self._keep(reserving.result())
            return
        refund = asyncio.ensure_future(speech_settle_turn([reserving.result()], [], 0))
        _background.add(refund)
        refund.add_done_callback(_background.discard)
