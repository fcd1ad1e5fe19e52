"""Speech budgets: reserve before each TTS request, settle with what the vendor billed, refuse past a limit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.utils import timezone

from chat.limits import BudgetView, Refusal, Reservation, speech_budget, speech_budget_now, speech_reserve
from chat.models import SiteSpeechUsage, SpeechAllowance, SpeechCharge, SpeechUsage

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def budgets(settings):
    settings.SPEECH_DAILY_CHARS = 1000
    settings.SPEECH_MONTHLY_CHARS = 0
    settings.SPEECH_SITE_DAILY_CHARS = 0
    return settings


def usage(user, period: str = "day") -> int:
    row = SpeechUsage.objects.filter(user=user, period=period).first()
    return row.characters if row else 0


def site_usage() -> int:
    row = SiteSpeechUsage.objects.first()
    return row.characters if row else 0


async def refused(user_id: int, chars: int) -> Refusal:
    with pytest.raises(Refusal) as caught:
        await speech_reserve(user_id, chars)
    return caught.value


async def test_it_holds_a_reservation_and_books_what_the_vendor_billed(user, budgets) -> None:
    reservation = await speech_reserve(user.pk, 120)
    assert await sync_to_async(usage)(user) == 120
    await reservation.settle(90, request_id="req-1")
    assert (await sync_to_async(usage)(user), await sync_to_async(usage)(user, "month")) == (90, 90)
    assert await sync_to_async(site_usage)() == 90
    charge = await SpeechCharge.objects.aget(request_id="req-1")
    assert (charge.user_id, charge.characters, charge.day) == (user.pk, 90, timezone.localdate())


async def test_it_refuses_speech_once_the_day_is_used_up(user, budgets) -> None:
    budgets.SPEECH_DAILY_CHARS = 100
    await (await speech_reserve(user.pk, 100)).settle(100)
    refusal = await refused(user.pk, 1)
    assert refusal.code == "budget_exhausted"
    assert "today's speech allowance (100 characters)" in refusal.message
    assert "replies continue as text" in refusal.message
    tomorrow = timezone.localdate() + timedelta(days=1)
    assert f"{tomorrow:%Y-%m-%d} 00:00 UTC" in refusal.message
    assert refusal.retry_after is not None and 0 < refusal.retry_after <= 86400
    row = await SpeechUsage.objects.aget(user=user, period="day")
    assert (row.characters, row.limit_chars, row.limited_at is not None) == (100, 100, True)


async def test_it_stops_mid_reply_at_the_chunk_that_does_not_fit_and_refunds_the_unbilled(user, budgets) -> None:
    budgets.SPEECH_DAILY_CHARS = 100
    first = await speech_reserve(user.pk, 40)
    second = await speech_reserve(user.pk, 40)
    assert (await refused(user.pk, 40)).code == "budget_exhausted"  # 80 + 40 > 100: this chunk stays silent
    await first.settle(40)
    await second.settle(10)  # billed less than held (e.g. cut short): the rest comes back
    third = await speech_reserve(user.pk, 40)
    await third.settle(40)
    assert await sync_to_async(usage)(user) == 90


async def test_it_gives_everything_back_for_a_request_that_was_never_billed(user, budgets) -> None:
    reservation = await speech_reserve(user.pk, 300)
    await reservation.cancel()
    assert await sync_to_async(usage)(user) == 0


async def test_it_counts_a_settled_receipt_once(user, budgets) -> None:
    reservation = await speech_reserve(user.pk, 50)
    await reservation.settle(50, request_id="req-7")
    await reservation.settle(50, request_id="req-7")  # the same receipt reported again
    retried = await speech_reserve(user.pk, 50)  # another reservation reporting the same vendor request
    await retried.settle(50, request_id="req-7")
    assert await sync_to_async(usage)(user) == 50
    assert await SpeechCharge.objects.acount() == 1


async def test_it_books_a_request_billed_beyond_its_reservation(user, budgets) -> None:
    reservation = await speech_reserve(user.pk, 10)
    await reservation.settle(25)  # the vendor's count is the truth, even past the estimate
    assert await sync_to_async(usage)(user) == 25


async def test_it_settles_although_the_caller_is_cancelled(user, budgets) -> None:
    reservation = await speech_reserve(user.pk, 200)
    settling = asyncio.create_task(reservation.settle(0))
    await asyncio.sleep(0)
    settling.cancel()
    await asyncio.gather(settling, return_exceptions=True)
    for _ in range(100):
        if await sync_to_async(usage)(user) == 0:
            break
        await asyncio.sleep(0.01)
    assert await sync_to_async(usage)(user) == 0


async def test_it_refunds_the_reservations_own_day_after_midnight(user, budgets) -> None:
    yesterday = timezone.localdate() - timedelta(days=1)
    await SpeechUsage.objects.acreate(user=user, period="day", start=yesterday, characters=100)
    await SiteSpeechUsage.objects.acreate(day=yesterday, characters=100)
    await Reservation(user.pk, 100, yesterday).settle(30)
    row = await SpeechUsage.objects.aget(user=user, start=yesterday)
    assert row.characters == 30
    assert (await SiteSpeechUsage.objects.aget(day=yesterday)).characters == 30


async def test_it_applies_the_monthly_allowance_with_its_own_renewal(user, budgets) -> None:
    budgets.SPEECH_DAILY_CHARS, budgets.SPEECH_MONTHLY_CHARS = 0, 50
    await speech_reserve(user.pk, 50)
    refusal = await refused(user.pk, 1)
    assert "this month's speech allowance (50 characters)" in refusal.message
    view = await speech_budget(user.pk)
    first_of_next = (timezone.localdate().replace(day=1) + timedelta(days=32)).replace(day=1)
    assert (view.remaining_chars, view.limit_chars) == (0, 50)
    assert view.resets_at is not None and view.resets_at.date() == first_of_next


async def test_it_caps_the_whole_site_for_every_user_even_unlimited_ones(user, other_user, budgets) -> None:
    budgets.SPEECH_SITE_DAILY_CHARS = 100
    await SpeechAllowance.objects.acreate(user=other_user, unlimited=True)
    await speech_reserve(user.pk, 80)
    refusal = await refused(other_user.pk, 30)
    assert refusal.code == "site_budget_exhausted"
    assert "for everyone" in refusal.message
    await speech_reserve(other_user.pk, 20)
    assert (await speech_budget(user.pk)).site_exhausted
    assert (await SiteSpeechUsage.objects.aget()).limited_at is not None
    assert await sync_to_async(usage)(other_user) == 20  # the refused attempt was rolled back everywhere


async def test_it_follows_an_operators_override(user, other_user, budgets) -> None:
    await SpeechAllowance.objects.acreate(user=user, daily_chars=10)
    await SpeechAllowance.objects.acreate(user=other_user, unlimited=True)
    await speech_reserve(user.pk, 10)
    assert (await refused(user.pk, 1)).code == "budget_exhausted"
    await speech_reserve(other_user.pk, 50_000)
    assert await speech_budget(other_user.pk) == BudgetView(None, None, None, False)


async def test_it_explains_a_user_whose_speech_is_switched_off(user, budgets) -> None:
    await SpeechAllowance.objects.acreate(user=user, daily_chars=0)
    refusal = await refused(user.pk, 5)
    assert refusal.code == "budget_exhausted" and "switched off for your account" in refusal.message


async def test_it_reports_what_is_left(user, budgets) -> None:
    await (await speech_reserve(user.pk, 250)).settle(250)
    view = await speech_budget(user.pk)
    tomorrow = timezone.localdate() + timedelta(days=1)
    assert (view.remaining_chars, view.limit_chars, view.site_exhausted, view.exhausted) == (750, 1000, False, False)
    assert view.as_payload() == {
        "remaining_chars": 750,
        "limit_chars": 1000,
        "resets_at": f"{tomorrow.isoformat()}T00:00:00+00:00",
        "site_exhausted": False,
    }


async def test_it_reports_the_tighter_of_day_and_month(user, budgets) -> None:
    budgets.SPEECH_MONTHLY_CHARS = 300
    await speech_reserve(user.pk, 200)
    view = await speech_budget(user.pk)
    assert (view.remaining_chars, view.limit_chars) == (100, 300)


def test_it_serves_the_users_budget_over_rest(client_alice, user, budgets) -> None:
    SpeechUsage.objects.create(user=user, period="day", start=timezone.localdate(), characters=400)
    body = client_alice.get("/api/usage/").json()
    assert (body["remaining_chars"], body["limit_chars"], body["site_exhausted"]) == (600, 1000, False)
    assert body["resets_at"].startswith((timezone.localdate() + timedelta(days=1)).isoformat())


def test_it_serves_unlimited_as_nulls(client_alice, user, budgets) -> None:
    SpeechAllowance.objects.create(user=user, unlimited=True)
    body = client_alice.get("/api/usage/").json()
    assert body == {"remaining_chars": None, "limit_chars": None, "resets_at": None, "site_exhausted": False}


def test_it_refuses_usage_to_anonymous_clients(client) -> None:
    assert client.get("/api/usage/").status_code == 403


def test_it_documents_usage_in_the_schema(client_alice) -> None:
    schema = client_alice.get("/api/schema/?format=json").json()
    assert "/api/usage/" in schema["paths"]
    fields = schema["components"]["schemas"]["SpeechBudget"]["properties"]
    assert set(fields) == {"remaining_chars", "limit_chars", "resets_at", "site_exhausted"}


def test_it_shows_a_budget_with_nothing_used_yet(user, budgets) -> None:
    view = speech_budget_now(user.pk)
    assert (view.remaining_chars, view.limit_chars) == (1000, 1000)


# --- across processes -----------------------------------------------------------------------------

WORKER = """
import asyncio, sys, time
import django
django.setup()
from chat.limits import Refusal, speech_reserve

user_id, start_at = int(sys.argv[1]), float(sys.argv[2])

async def one():
    try:
        await speech_reserve(user_id, 100)
        return 1
    except Refusal:
        return 0

async def main():
    await asyncio.sleep(max(0.0, start_at - time.time()))  # both processes start together
    print(sum(await asyncio.gather(*(one() for _ in range(25)))))

asyncio.run(main())
"""


def _database_url(tmp_path: Path) -> str:
    """The test database when it is PostgreSQL; a migrated SQLite file otherwise (in-memory is one process only)."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
        return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    return f"sqlite:///{tmp_path / 'db.sqlite3'}"


def test_it_never_overspends_across_two_processes(user, tmp_path) -> None:
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": _database_url(tmp_path),
        "SPEECH_DAILY_CHARS": "2000",
        "SPEECH_MONTHLY_CHARS": "0",
        "SPEECH_SITE_DAILY_CHARS": "0",
    }
    user_id = user.pk
    if connection.vendor != "postgresql":
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        script = "from django.contrib.auth.models import User; print(User.objects.create_user('racer').pk)"
        made = subprocess.run([*manage, "shell", "-c", script], cwd=ROOT, env=env, check=True, capture_output=True)
        user_id = int(made.stdout.decode().split()[-1])
    start_at = f"{time.time() + 3:.3f}"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(user_id), start_at],
            cwd=ROOT,
            env={**env, "DJANGO_SETTINGS_MODULE": "voicechat.settings"},
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    granted = [int(worker.communicate(timeout=60)[0].split()[-1]) for worker in workers]
    assert sum(granted) == 20  # 50 requests of 100 characters against 2,000: exactly 20 fit
    if connection.vendor == "postgresql":
        assert usage(user) == 2000
    else:
        row = f"SpeechUsage.objects.get(user_id={user_id}, period='day')"
        script = f"from chat.models import SpeechUsage; print({row}.characters)"
        out = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=env, check=True, capture_output=True
        )
        assert out.stdout.decode().split()[-1] == "2000"


async def test_it_holds_nothing_for_an_unlimited_user_and_books_the_bill_at_settle(user, settings) -> None:
    """No limit anywhere: no row is written while the turn speaks; its bill still shows in the usage."""
    from chat.limits.budget import speech_reserve_block, speech_settle_turn

    settings.SPEECH_DAILY_CHARS = settings.SPEECH_MONTHLY_CHARS = settings.SPEECH_SITE_DAILY_CHARS = 0
    blocks = [await speech_reserve_block(user.pk, 40, 1000), await speech_reserve_block(user.pk, 30, 1000)]
    assert [b.counted for b in blocks] == [False, False]
    assert not await SpeechUsage.objects.filter(user=user).aexists()
    await speech_settle_turn(blocks, [("req-1", 38), ("req-1", 38), ("req-2", 25)], 5)
    assert await sync_to_async(usage)(user) == await sync_to_async(usage)(user, "month") == 68
    assert await sync_to_async(site_usage)() == 68


async def test_it_books_a_charge_once_when_another_process_booked_it_after_the_turn_looked(
    user, budgets, monkeypatch
) -> None:
    """The turn's one read found neither request booked, but another process booked req-1 before the
    insert: the unique key refuses the batch and the turn books row by row, counting only req-2."""
    from chat.limits import budget
    from chat.limits.budget import speech_reserve_block, speech_settle_turn

    block = await speech_reserve_block(user.pk, 100, 1000)
    await SpeechCharge.objects.acreate(request_id="req-1", user=user, day=block.day, characters=40)
    real_filter = budget.SpeechCharge.objects.filter

    def looked_too_early(*args, **kwargs):
        return real_filter(*args, **kwargs).none() if "request_id__in" in kwargs else real_filter(*args, **kwargs)

    monkeypatch.setattr(budget.SpeechCharge.objects, "filter", looked_too_early)
    await speech_settle_turn([block], [("req-1", 40), ("req-2", 25)], 0)
    assert await sync_to_async(usage)(user) == 25
    charges = {c.request_id: c.characters async for c in SpeechCharge.objects.all()}
    assert charges == {"req-1": 40, "req-2": 25}
