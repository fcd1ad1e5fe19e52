"""Admin for speech budgets: per-user overrides, usage per user and per day, and who reached a limit."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from chat.models import SiteSpeechUsage, SpeechAllowance, SpeechCharge, SpeechUsage


class _ReadOnly(admin.ModelAdmin):
    """Counts are written by the budget only; deleting a row is how an operator resets it."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SpeechAllowance)
class SpeechAllowanceAdmin(admin.ModelAdmin):
    list_display = ["user", "unlimited", "daily_chars", "monthly_chars", "note", "updated_at"]
    list_filter = ["unlimited"]
    search_fields = ["user__username", "note"]
    autocomplete_fields = ["user"]
    list_select_related = ["user"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        daily, monthly = settings.SPEECH_DAILY_CHARS, settings.SPEECH_MONTHLY_CHARS
        defaults = f"Defaults: {daily:,} a day, {monthly:,} a month (0: no limit)."
        form.base_fields["daily_chars"].help_text += f" {defaults}"
        return form


class LimitReachedFilter(admin.SimpleListFilter):
    """Periods in which speech was refused at least once: the users who hit their limit."""

    title = "limit reached"
    parameter_name = "limit_reached"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(limited_at__isnull=self.value() == "no")
        return queryset


@admin.register(SpeechUsage)
class SpeechUsageAdmin(_ReadOnly):
    list_display = ["user", "period", "start", "characters", "limit_chars", "limited_at"]
    list_filter = ["period", LimitReachedFilter, "start"]
    search_fields = ["user__username"]
    date_hierarchy = "start"
    list_select_related = ["user"]
    readonly_fields = ["user", "period", "start", "characters", "limit_chars", "limited_at"]


@admin.register(SiteSpeechUsage)
class SiteSpeechUsageAdmin(_ReadOnly):
    list_display = ["day", "characters", "limited_at"]
    list_filter = [LimitReachedFilter]
    date_hierarchy = "day"
    readonly_fields = ["day", "characters", "limited_at"]


@admin.register(SpeechCharge)
class SpeechChargeAdmin(_ReadOnly):
    """One row per vendor request billed: what it cost and whose it was."""

    list_display = ["created_at", "user", "characters", "request_id"]
    search_fields = ["request_id", "user__username"]
    date_hierarchy = "created_at"
    list_select_related = ["user"]
    readonly_fields = ["request_id", "user", "day", "characters", "created_at"]
