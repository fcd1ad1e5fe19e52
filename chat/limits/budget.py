"""Speech budgets in characters, the unit the TTS vendor bills.

Each user has an allowance per day and per month (SPEECH_DAILY_CHARS, SPEECH_MONTHLY_CHARS, or their
SpeechAllowance row), and the whole site one per day (SPEECH_SITE_DAILY_CHARS). Before each TTS request
the turn reserves the chunk's length with `speech_reserve`; afterwards `Reservation.settle` books what
the vendor billed (its `character-cost`) and gives the difference back.

Counts live in the database and change only through conditional UPDATEs (`... WHERE characters <=
limit - n`), all three rows in one transaction, so concurrent requests in any number of processes can
never spend past a limit together. A vendor request id is booked once (SpeechCharge is unique on it),
so a receipt reported twice is not counted twice. A reservation of a process that dies before
settling stays counted: the user loses at most one chunk, the vendor is never overspent.
"""

from __future__ import annotations

import asyncio
import random
import time as clock
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from functools import partial
from typing import ParamSpec, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, models, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Greatest
from django.utils import timezone

from chat.limits.refusal import Refusal
from chat.models import SiteSpeechUsage, SpeechAllowance, SpeechCharge, SpeechUsage
from chat.protocol import SpeechBudget

# In the thread pool like the turn's writes, not behind every connection's session lookups.
_database_call = partial(database_sync_to_async, thread_sensitive=False)
_settling: set[asyncio.Future[None]] = set()  # settlements that outlive a cancelled caller

DAY, MONTH = SpeechUsage.Period.DAY, SpeechUsage.Period.MONTH
_Row = TypeVar("_Row", bound=models.Model)
_P = ParamSpec("_P")
_T = TypeVar("_T")
_SQLITE_ATTEMPTS = 40


def _sqlite_retrying(function: Callable[_P, _T]) -> Callable[_P, _T]:
    """Run a budget transaction again when SQLite reports a competing writer instead of waiting for it.

    SQLite has one writer at a time; a file database waits its busy timeout, but some lock conflicts
    (a shared-cache database, a stale read snapshot) fail at once. Each transaction rolled back
    whole, so running it again is safe.
    """

    def run(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        for attempt in range(_SQLITE_ATTEMPTS):
            try:
                return function(*args, **kwargs)
            except OperationalError as exc:
                if connection.vendor != "sqlite" or "locked" not in str(exc) or attempt == _SQLITE_ATTEMPTS - 1:
                    raise
                clock.sleep(random.uniform(0.005, 0.025))
        raise AssertionError("unreachable")

    return run


@dataclass(frozen=True)
class BudgetView:
    """What a user has left; None limit means unlimited. The tightest of the day and month allowances."""

    remaining_chars: int | None
    limit_chars: int | None
    resets_at: datetime | None
    site_exhausted: bool

    @property
    def exhausted(self) -> bool:
        return self.site_exhausted or self.remaining_chars == 0

    def give_back(self, chars: int) -> BudgetView:
        """This view with `chars` returned to the binding allowance (taken from it when negative)."""
        if self.remaining_chars is None or self.limit_chars is None:
            return self
        return replace(self, remaining_chars=min(self.limit_chars, max(0, self.remaining_chars + chars)))

    def as_payload(self) -> SpeechBudget:
        return {
            "remaining_chars": self.remaining_chars,
            "limit_chars": self.limit_chars,
            "resets_at": self.resets_at.isoformat() if self.resets_at else None,
            "site_exhausted": self.site_exhausted,
        }


@dataclass(frozen=True)
class _Allowance:
    daily: int | None
    monthly: int | None


@dataclass
class Reservation:
    """Characters held for one TTS request until `settle` books what was billed (call it exactly once)."""

    user_id: int
    characters: int
    day: date
    view: BudgetView | None = field(default=None, compare=False)  # what was left just after reserving
    settled: bool = field(default=False, compare=False)
    counted: bool = field(default=True, compare=False)  # False: no limit applied, nothing held in the rows

    async def settle(self, billed_chars: int, *, request_id: str = "") -> None:
        """Book `billed_chars` (the receipt's characters) instead of the reservation; later calls do nothing."""
        if self.settled:
            return
        self.settled = True
        if billed_chars == self.characters and not request_id:
            return
        # Shielded: an interrupted turn settles too, or its unspent reservation would stay counted.
        task = asyncio.ensure_future(_settle_async(self, max(0, billed_chars), request_id))
        _settling.add(task)
        task.add_done_callback(_settling.discard)
        await asyncio.shield(task)

    async def cancel(self) -> None:
        """Nothing was billed (the request never reached the vendor): give it all back."""
        await self.settle(0)


async def speech_reserve(user_id: int, chars: int) -> Reservation:
    """Hold `chars` of the user's and the site's allowances for one TTS request.

    Raises Refusal("budget_exhausted" | "site_budget_exhausted") saying when the allowance renews.
    """
    return await _database_call(_sqlite_retrying(_reserve))(user_id, max(0, chars))


async def speech_reserve_block(user_id: int, need: int, block: int) -> Reservation:
    """Hold `block` characters for the rest of a reply (or just `need`, when less than a block is left).

    A reply reserves a block at a time rather than each chunk, so a spoken turn costs a write or two,
    not two per sentence; what the block did not use is given back when the turn settles.
    """
    return await _database_call(_sqlite_retrying(_reserve_block))(user_id, max(0, need), max(need, block))


async def speech_settle_turn(reservations: list[Reservation], charges: list[tuple[str, int]], unbilled: int) -> None:
    """Book a whole turn at once: the vendor's charges (each request id once) against what it reserved.

    `unbilled` is what was billed without a request id. Shielded from cancellation: an interrupted
    turn's unspent reservation must not stay counted.
    """
    if not reservations:
        return
    task = asyncio.ensure_future(_database_call(_sqlite_retrying(_settle_turn))(reservations, charges, unbilled))
    _settling.add(task)
    task.add_done_callback(_settling.discard)
    await asyncio.shield(task)


async def speech_budget(user_id: int) -> BudgetView:
    """What the user has left today (for the page's indicator and the `budget` event)."""
    return await _database_call(_sqlite_retrying(speech_budget_now))(user_id)


# --- database side (worker threads) -----------------------------------------------------------


def _allowance(user_id: int) -> _Allowance:
    row = SpeechAllowance.objects.filter(user_id=user_id).first()
    if row is not None and row.unlimited:
        return _Allowance(None, None)
    daily = row.daily_chars if row is not None and row.daily_chars is not None else settings.SPEECH_DAILY_CHARS or None
    monthly = (
        row.monthly_chars
        if row is not None and row.monthly_chars is not None
        else settings.SPEECH_MONTHLY_CHARS or None
    )
    return _Allowance(daily, monthly)


def _site_cap() -> int | None:
    return settings.SPEECH_SITE_DAILY_CHARS or None


class _OverLimit(Exception):
    def __init__(self, period: str, limit: int) -> None:
        self.period, self.limit = period, limit


def _take(rows: QuerySet[_Row], create: _Row, chars: int, limit: int | None) -> bool:
    """Add `chars` to the one row of `rows` unless that passes `limit`; creates the row on first use."""
    if limit is not None and chars > limit:
        return False
    allowed = rows if limit is None else rows.filter(characters__lte=limit - chars)
    if allowed.update(characters=F("characters") + chars):
        return True
    type(create)._default_manager.bulk_create([create], ignore_conflicts=True)
    return bool(allowed.update(characters=F("characters") + chars))


def _reserve(user_id: int, chars: int, *, mark: bool = True) -> Reservation:
    """Hold `chars` against every period's limit; `mark` False: a refusal is not recorded as one for the admin
    (a block that did not fit, when the chunk itself may still)."""
    today = timezone.localdate()
    if chars == 0:
        return Reservation(user_id, 0, today)
    month = today.replace(day=1)
    allowance, site_cap = _allowance(user_id), _site_cap()
    user_rows = SpeechUsage.objects.filter(user_id=user_id)
    try:
        with transaction.atomic():
            # Always in this order (the user's rows, then the site's), so concurrent reservations cannot deadlock.
            for period, start, limit in ((DAY, today, allowance.daily), (MONTH, month, allowance.monthly)):
                row = SpeechUsage(user_id=user_id, period=period, start=start)
                if not _take(user_rows.filter(period=period, start=start), row, chars, limit):
                    raise _OverLimit(period, limit or 0)
            site = SiteSpeechUsage.objects.filter(day=today)
            if not _take(site, SiteSpeechUsage(day=today), chars, site_cap):
                raise _OverLimit("site", site_cap or 0)
    except _OverLimit as over:
        if mark:
            _mark_limited(user_id, over, today)
        raise _refusal(over, today) from None
    return Reservation(user_id, chars, today, view=_view(user_id, allowance, today))


def _reserve_block(user_id: int, need: int, block: int) -> Reservation:
    if _allowance(user_id) == _Allowance(None, None) and _site_cap() is None:
        # Nothing to hold against: the turn's bill is recorded once, when it settles.
        unlimited = BudgetView(None, None, None, site_exhausted=False)
        return Reservation(user_id, block, timezone.localdate(), view=unlimited, counted=False)
    if block > need:
        try:
            return _reserve(user_id, block, mark=False)
        except Refusal:
            pass  # less than a block is left: take just this chunk, or refuse it
    return _reserve(user_id, need)


def _settle_turn(reservations: list[Reservation], charges: list[tuple[str, int]], unbilled: int) -> None:
    with transaction.atomic():
        billed = unbilled + _book_charges(reservations[0], charges)
        # Each reservation keeps its own day and month, even if midnight passed while the reply spoke.
        for reservation in reservations:
            kept = min(billed, reservation.characters)
            billed -= kept
            if reservation.counted:
                _adjust(reservation, kept - reservation.characters)
            else:
                _record(reservation, kept)
        last = reservations[-1]
        if billed and last.counted:  # billed past what was reserved (a vendor counting differently)
            _adjust(last, billed)
        elif billed:
            _record(last, billed)
        for reservation in reservations:
            reservation.settled = True


def _book_charges(first: Reservation, charges: list[tuple[str, int]]) -> int:
    """Insert a row per vendor request id not booked yet; the characters of those newly booked.

    One read and one insert for the whole turn; only if another process books one of the same ids in
    between (the unique key refuses the insert) does it go row by row, each in its own savepoint.
    """
    if not charges:
        return 0
    booked = set(
        SpeechCharge.objects.filter(request_id__in=[r for r, _ in charges]).values_list("request_id", flat=True)
    )
    fresh = dict(charges)  # a request reported twice within the turn counts once
    for request_id in booked:
        fresh.pop(request_id, None)
    rows = [
        SpeechCharge(request_id=request_id, user_id=first.user_id, day=first.day, characters=characters)
        for request_id, characters in fresh.items()
    ]
    try:
        with transaction.atomic():
            SpeechCharge.objects.bulk_create(rows)
        return sum(fresh.values())
    except IntegrityError:
        pass
    billed = 0
    for row in rows:
        try:
            with transaction.atomic():
                row.save(force_insert=True)
        except IntegrityError:
            continue  # this request is booked already
        billed += row.characters
    return billed


def _record(reservation: Reservation, chars: int) -> None:
    """Count what an unlimited user was billed, for the admin's usage figures."""
    if not chars:
        return
    day, month = reservation.day, reservation.day.replace(day=1)
    for period, start in ((DAY, day), (MONTH, month)):
        rows = SpeechUsage.objects.filter(user_id=reservation.user_id, period=period, start=start)
        _take(rows, SpeechUsage(user_id=reservation.user_id, period=period, start=start), chars, None)
    _take(SiteSpeechUsage.objects.filter(day=day), SiteSpeechUsage(day=day), chars, None)


def _adjust(reservation: Reservation, delta: int) -> None:
    if not delta:
        return
    day, month = reservation.day, reservation.day.replace(day=1)
    change = {"characters": Greatest(F("characters") + delta, 0)}
    SpeechUsage.objects.filter(
        Q(period=DAY, start=day) | Q(period=MONTH, start=month), user_id=reservation.user_id
    ).update(**change)
    SiteSpeechUsage.objects.filter(day=day).update(**change)


def _mark_limited(user_id: int, over: _OverLimit, today: date) -> None:
    """Remember that speech was refused, for the admin's "reached its limit" filter."""
    now = timezone.now()
    if over.period == "site":
        SiteSpeechUsage.objects.filter(day=today, limited_at__isnull=True).update(limited_at=now)
        return
    start = today if over.period == DAY else today.replace(day=1)
    SpeechUsage.objects.filter(user_id=user_id, period=over.period, start=start).update(limit_chars=over.limit)
    SpeechUsage.objects.filter(user_id=user_id, period=over.period, start=start, limited_at__isnull=True).update(
        limited_at=now
    )


def _settle(reservation: Reservation, billed: int, request_id: str) -> None:
    with transaction.atomic():
        if request_id and billed:
            try:
                with transaction.atomic():
                    SpeechCharge.objects.create(
                        request_id=request_id, user_id=reservation.user_id, day=reservation.day, characters=billed
                    )
            except IntegrityError:
                billed = 0  # this request is booked already; this reservation only gives its hold back
        # The reservation's own day and month, even if midnight passed while it was speaking.
        _adjust(reservation, billed - reservation.characters)


@_database_call
def _settle_async(reservation: Reservation, billed: int, request_id: str) -> None:
    _sqlite_retrying(_settle)(reservation, billed, request_id)


def speech_budget_now(user_id: int) -> BudgetView:
    """The synchronous `speech_budget`, for views."""
    return _view(user_id, _allowance(user_id), timezone.localdate())


def _view(user_id: int, allowance: _Allowance, today: date) -> BudgetView:
    month = today.replace(day=1)
    used = dict(
        SpeechUsage.objects.filter(
            Q(period=DAY, start=today) | Q(period=MONTH, start=month), user_id=user_id
        ).values_list("period", "characters")
    )
    site_cap = _site_cap()
    site_used = SiteSpeechUsage.objects.filter(day=today).values_list("characters", flat=True).first() or 0
    windows = [
        (max(0, limit - used.get(period, 0)), limit, resets_at)
        for period, limit, resets_at in (
            (DAY, allowance.daily, _next_day(today)),
            (MONTH, allowance.monthly, _next_month(today)),
        )
        if limit is not None
    ]
    site_exhausted = site_cap is not None and site_used >= site_cap
    if not windows:
        return BudgetView(None, None, None, site_exhausted)
    # The binding window is the one with least left; of two empty ones, the one that renews later.
    remaining, limit, resets_at = min(windows, key=lambda w: (w[0], -w[2].timestamp()))
    return BudgetView(remaining, limit, resets_at, site_exhausted)


# --- dates and sentences ----------------------------------------------------------------------


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def _next_day(today: date) -> datetime:
    return _midnight(today + timedelta(days=1))


def _next_month(today: date) -> datetime:
    first = today.replace(day=1)
    return _midnight((first + timedelta(days=32)).replace(day=1))


def _in(delta: timedelta) -> str:
    minutes = max(1, round(delta.total_seconds() / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{round(hours / 24)} days"


def _refusal(over: _OverLimit, today: date) -> Refusal:
    resets_at = _next_month(today) if over.period == MONTH else _next_day(today)
    wait = resets_at - timezone.now()
    when = f"{timezone.localtime(resets_at):%Y-%m-%d %H:%M %Z} (in {_in(wait)})"
    if over.period == "site":
        return Refusal(
            "site_budget_exhausted",
            "This site has used up today's speech allowance for everyone; replies continue as text. "
            f"Speech returns at {when}.",
            retry_after=wait.total_seconds(),
        )
    if not over.limit:
        return Refusal(
            "budget_exhausted",
            "Speech is switched off for your account; replies come as text. An administrator can change that.",
        )
    window = "today's" if over.period == DAY else "this month's"
    return Refusal(
        "budget_exhausted",
        f"You have used up {window} speech allowance ({over.limit:,} characters); replies continue as text. "
        f"It renews at {when}.",
        retry_after=wait.total_seconds(),
    )
