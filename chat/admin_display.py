"""How a message reads in the admin: badges, one line of timings, what it cost, its text rendered."""

from __future__ import annotations

from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as format_date
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from chat.markup import markdown_html, markdown_plain
from chat.models import Message
from chat.turns import audio as audio_store

# Short labels for the one-line summary; the field's verbose name and help text become its tooltip.
TIMING_LABELS = {
    "llm_first_token_ms": "LLM",
    "first_chunk_ms": "first chunk",
    "tts_first_byte_ms": "TTS",
    "first_audio_sent_ms": "first audio",
    "client_first_audible_ms": "heard",
}
# A tone per value, styled in static/site/admin.css; anything unlisted is neutral.
STATUS_TONES: dict[str, str] = {
    Message.Status.PENDING: "neutral",
    Message.Status.STREAMING: "info",
    Message.Status.COMPLETE: "ok",
    Message.Status.INTERRUPTED: "warn",
    Message.Status.FAILED: "bad",
}
AUDIO_TONES: dict[str, str] = {
    Message.AudioStatus.NONE: "neutral",
    Message.AudioStatus.PARTIAL: "warn",
    Message.AudioStatus.COMPLETE: "ok",
    Message.AudioStatus.FAILED: "bad",
}
PREVIEW_CHARS = 90
TOOLTIP_CHARS = 600
NOTHING = "—"


# Beside the status badge an audio badge needs its subject, or two "Complete"s would sit side by side.
AUDIO_BADGE_LABELS: dict[str, str] = {
    Message.AudioStatus.NONE: "No audio",
    Message.AudioStatus.PARTIAL: "Audio partial",
    Message.AudioStatus.COMPLETE: "Audio complete",
    Message.AudioStatus.FAILED: "Audio failed",
}


def badge(label: str, tone: str, *, title: str = "") -> SafeString:
    if not title:
        return format_html('<span class="vc-badge vc-{}">{}</span>', tone, label)
    return format_html('<span class="vc-badge vc-{}" title="{}">{}</span>', tone, title, label)


def status_badge(message: Message) -> SafeString:
    """The message's status; a failed one carries its error in the tooltip."""
    title = ": ".join(part for part in (message.error_code, message.error_message) if part)
    return badge(message.get_status_display(), STATUS_TONES.get(message.status, "neutral"), title=title)


def audio_badge(message: Message, *, subject: bool = True) -> SafeString:
    """The audio status; `subject=False` where a column heading already says "audio"."""
    full = message.get_audio_status_display()
    label = AUDIO_BADGE_LABELS.get(message.audio_status, full) if subject else full.split(" (")[0]
    says_more = full.lower() not in label.lower()  # "Partial (audio failed mid-reply)" beside "Audio partial"
    return badge(label, AUDIO_TONES.get(message.audio_status, "neutral"), title=full if says_more else "")


def has_speech_record(message: Message) -> bool:
    """Whether there is anything about audio to show: user messages and text-only replies have none."""
    return message.role == Message.Role.ASSISTANT and (
        bool(message.audio) or message.audio_status != Message.AudioStatus.NONE or message.tts_characters > 0
    )


def audio_player(message: Message) -> SafeString | str:
    url = audio_store.audio_url(message)
    return format_html('<audio controls preload="none" src="{}"></audio>', url) if url else NOTHING


def timings_line(message: Message) -> SafeString:
    """The reply's latency figures on one line, each with a tooltip saying what it measures."""
    parts = [
        _figure(f"{label} {value} ms", field)
        for field, label in TIMING_LABELS.items()
        if (value := getattr(message, field)) is not None
    ]
    if message.audio_duration_ms:
        parts.append(_figure(f"{message.audio_duration_ms / 1000:.1f} s audio", "audio_duration_ms"))
    if message.client_underruns:
        noun = "underrun" if message.client_underruns == 1 else "underruns"
        parts.append(_figure(f"{message.client_underruns} {noun}", "client_underruns", tone="warn"))
    return format_html_join(" · ", "{}", ((part,) for part in parts))


def _figure(text: str, field: str, *, tone: str = "") -> SafeString:
    model_field = Message._meta.get_field(field)
    assert isinstance(model_field, models.Field)
    title = f"{model_field.verbose_name}: {model_field.help_text}" if model_field.help_text else ""
    classes = f"vc-figure vc-{tone}" if tone else "vc-figure"
    return format_html('<span class="{}" title="{}">{}</span>', classes, title or model_field.verbose_name, text)


def billing_line(message: Message) -> str:
    """What the reply's speech cost, in the unit the vendor bills: characters."""
    backend = f" · {message.tts_backend}" if message.tts_backend else ""
    if not message.tts_characters:
        return f"not billed{backend}"
    noun = "character" if message.tts_characters == 1 else "characters"
    return f"{message.tts_characters:,} {noun} billed{backend}"


def speech_summary(*, characters: int, spoken: int, audio_ms: int) -> str:
    """A conversation's speech in one line: what it cost and how much was said."""
    if not spoken:
        return "no spoken replies"
    replies = "reply" if spoken == 1 else "replies"
    return f"{characters:,} characters billed for {spoken} spoken {replies} · {audio_ms / 1000:.1f} s audio"


def moment(message: Message, *, seconds: bool = True) -> SafeString:
    """When the message was written, short on screen and in full in the tooltip."""
    local = timezone.localtime(message.created_at)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        message.created_at.isoformat(),
        format_date(local, "l j F Y, H:i:s T"),
        format_date(local, "N j, H:i:s" if seconds else "N j, H:i"),
    )


def transcript_heading(message: Message) -> SafeString:
    """Role and time, the badges that matter for this kind of message, and a link to the full record."""
    badges = [status_badge(message)] if _status_worth_showing(message) else []
    if has_speech_record(message):
        badges.append(audio_badge(message))
    return format_html(
        '<strong class="vc-role">{}</strong> {} {} <a class="vc-details" href="{}">details</a>',
        message.get_role_display(),
        moment(message),
        format_html_join(" ", "{}", ((b,) for b in badges)),
        reverse("admin:chat_message_change", args=[message.pk]),
    )


def _status_worth_showing(message: Message) -> bool:
    # A user's message is always complete once stored; saying so on every row is noise.
    return message.role == Message.Role.ASSISTANT or message.status != Message.Status.COMPLETE


def transcript_details(message: Message) -> SafeString | str:
    """A reply's error, timings and cost, a short line each; nothing at all for a user's message."""
    if message.role != Message.Role.ASSISTANT:
        return ""
    lines = []
    if message.error_code or message.error_message:
        error = ": ".join(part for part in (message.error_code, message.error_message) if part)
        lines.append(format_html('<span class="vc-error">{}</span>', error))
    if timings := timings_line(message):
        lines.append(timings)
    if has_speech_record(message):
        lines.append(format_html('<span class="vc-figure">{}</span>', billing_line(message)))
    return format_html_join("", '<div class="vc-line">{}</div>', ((line,) for line in lines))


def message_text(message: Message) -> SafeString:
    if not message.text:
        return format_html('<p class="vc-empty">{}</p>', "(no text)")
    return markdown_html(message.text)


def text_preview(message: Message) -> SafeString:
    """The start of the text on one line, the longer text in the tooltip; markdown reads as prose."""
    flat = markdown_plain(message.text)
    if not flat and message.error_code:
        return format_html(
            '<span class="vc-preview vc-empty" title="{}">({})</span>', message.error_message, message.error_code
        )
    return format_html(
        '<span class="vc-preview" title="{}">{}</span>',
        Truncator(flat).chars(TOOLTIP_CHARS),
        Truncator(flat).chars(PREVIEW_CHARS) or NOTHING,
    )
