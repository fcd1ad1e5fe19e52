"""The operator's side of speech budgets: overrides, usage per user and day, who reached a limit."""

from __future__ import annotations

import pytest
from django.utils import timezone

from chat.limits import speech_budget_now
from chat.models import SiteSpeechUsage, SpeechAllowance, SpeechCharge, SpeechUsage

pytestmark = pytest.mark.django_db


@pytest.fixture
def usage_rows(user, other_user):
    today = timezone.localdate()
    SpeechUsage.objects.create(
        user=user, period="day", start=today, characters=20_000, limit_chars=20_000, limited_at=timezone.now()
    )
    SpeechUsage.objects.create(user=other_user, period="day", start=today, characters=1_234)
    SiteSpeechUsage.objects.create(day=today, characters=21_234)
    SpeechCharge.objects.create(request_id="req-abc", user=user, day=today, characters=120)


def test_it_lists_usage_per_user_and_day(admin_client, usage_rows) -> None:
    page = admin_client.get("/admin/chat/speechusage/").content.decode()
    assert "alice" in page and "mallory" in page and "1234" in page.replace(",", "")


def test_it_filters_the_users_who_reached_their_limit(admin_client, usage_rows) -> None:
    page = admin_client.get("/admin/chat/speechusage/?limit_reached=yes").content.decode()
    assert "alice" in page and "mallory" not in page
    page = admin_client.get("/admin/chat/speechusage/?limit_reached=no").content.decode()
    assert "mallory" in page and "alice" not in page


def test_it_shows_site_usage_and_each_billed_request(admin_client, usage_rows) -> None:
    assert "21234" in admin_client.get("/admin/chat/sitespeechusage/").content.decode().replace(",", "")
    assert "req-abc" in admin_client.get("/admin/chat/speechcharge/").content.decode()


def test_it_keeps_counts_read_only_but_lets_an_operator_reset_them(admin_client, usage_rows, user) -> None:
    row = SpeechUsage.objects.get(user=user)
    assert admin_client.get("/admin/chat/speechusage/add/").status_code == 403
    assert admin_client.post(f"/admin/chat/speechusage/{row.pk}/change/", {"characters": 0}).status_code == 403
    assert SpeechUsage.objects.get(pk=row.pk).characters == 20_000
    response = admin_client.post(f"/admin/chat/speechusage/{row.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not SpeechUsage.objects.filter(pk=row.pk).exists()
    assert speech_budget_now(user.pk).remaining_chars == 20_000  # the deleted day starts again from nothing


def test_it_overrides_a_users_allowance(admin_client, user, settings) -> None:
    settings.SPEECH_DAILY_CHARS = 20_000
    form = admin_client.get("/admin/chat/speechallowance/add/").content.decode()
    assert "Defaults: 20,000 a day" in form
    response = admin_client.post(
        "/admin/chat/speechallowance/add/", {"user": user.pk, "daily_chars": 500, "monthly_chars": "", "note": "trial"}
    )
    assert response.status_code == 302
    assert SpeechAllowance.objects.get(user=user).daily_chars == 500
    assert speech_budget_now(user.pk).limit_chars == 500
    admin_client.post(
        f"/admin/chat/speechallowance/{user.pk}/change/", {"user": user.pk, "unlimited": "on", "daily_chars": 500}
    )
    assert speech_budget_now(user.pk).limit_chars is None
