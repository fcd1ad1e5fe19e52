"""Agents, conversations and messages, with the audio, timings and cost of each spoken reply."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.text import Truncator

from chat.markup import markdown_plain

# Raw PCM rates the ElevenLabs stream endpoint produces (16-bit mono little-endian, no header).
OUTPUT_FORMATS = [(f"pcm_{rate}", f"PCM {rate} Hz") for rate in (8000, 16000, 22050, 24000, 32000, 44100, 48000)]


def _unit_interval() -> list[MinValueValidator | MaxValueValidator]:
    return [MinValueValidator(0.0), MaxValueValidator(1.0)]


class Agent(models.Model):
    """What an operator configures: persona, LLM and voice. The self-hosted ElevenLabs agent."""

    class TtsTransport(models.TextChoices):
        HTTP = "http", "HTTP: a /stream request per sentence"
        WEBSOCKET = "websocket", "WebSocket: one stream per reply (TTS_WEBSOCKET_BACKEND)"

    class Backend(models.TextChoices):
        LLM_TTS = "llm_tts", "LLM + ElevenLabs TTS"
        ELEVENLABS_AGENT = "elevenlabs_agent", "ElevenLabs agent"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    backend = models.CharField(
        max_length=20,
        choices=Backend.choices,
        default=Backend.LLM_TTS,
        help_text="Who writes and speaks the replies: voicechat's LLM and TTS, or an agent built on ElevenLabs.",
    )
    elevenlabs_agent_id = models.CharField(
        "ElevenLabs agent id",
        max_length=100,
        blank=True,
        help_text="The vendor's agent_id (agent_…), for the ElevenLabs agent backend.",
    )
    system_prompt = models.TextField(blank=True)
    first_message = models.TextField(blank=True, help_text="Spoken when a conversation opens; optional.")
    llm = models.CharField(
        "LLM provider", max_length=100, blank=True, help_text="Alias from LLM_PROVIDERS; blank uses LLM_BACKEND."
    )
    voice_id = models.CharField("voice ID", max_length=100, blank=True, help_text="Blank uses ELEVENLABS_VOICE_ID.")
    tts_model_id = models.CharField(
        "TTS model ID", max_length=100, blank=True, help_text="Blank uses ELEVENLABS_MODEL_ID."
    )
    tts_transport = models.CharField(
        "TTS transport",
        max_length=10,
        choices=TtsTransport.choices,
        default=TtsTransport.HTTP,
        help_text="How replies reach the voice: a request per sentence, or the vendor's WebSocket per reply.",
    )
    stability = models.FloatField(default=0.5, validators=_unit_interval())
    similarity_boost = models.FloatField(default=0.75, validators=_unit_interval())
    style = models.FloatField(default=0.0, validators=_unit_interval())
    speed = models.FloatField(default=1.0, validators=[MinValueValidator(0.7), MaxValueValidator(1.2)])
    use_speaker_boost = models.BooleanField(default=True)
    language_code = models.CharField(
        max_length=8, blank=True, help_text="ISO 639-1 code such as en or de; blank lets the model detect it."
    )
    user_voice_ids = models.JSONField(
        "voices users may pick",
        default=list,
        blank=True,
        help_text="Voice IDs a user may choose for a conversation, besides the agent's own voice.",
    )
    allow_breaks = models.BooleanField(
        "allow SSML pauses",
        default=False,
        help_text='Pass the LLM\'s <break time="1.5s"/> tags (up to 3 s) to models that honour them '
        "(ElevenLabs Flash, Turbo and Multilingual v2; not v3). Never shown in the page.",
    )
    output_format = models.CharField(
        max_length=12,
        blank=True,
        choices=OUTPUT_FORMATS,
        help_text="Audio of this agent's replies; blank uses ELEVENLABS_OUTPUT_FORMAT. The Python SDK's "
        "default audio interface plays pcm_16000 only; pcm_44100 needs an ElevenLabs Pro plan.",
    )
    # Which conversation_initiation_client_data overrides a client may send; the vendor's Security tab.
    allow_voice_override = models.BooleanField(
        "allow voice_id override", default=False, help_text="Clients may pick another voice (tts.voice_id)."
    )
    allow_first_message_override = models.BooleanField(
        "allow first_message override", default=False, help_text="Clients may replace the first message."
    )
    allow_language_override = models.BooleanField(
        "allow language override", default=False, help_text="Clients may set the language (agent.language)."
    )
    is_default = models.BooleanField(default=False, help_text="Used when a client names no agent.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_agent"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.language_code and not (
            2 <= len(self.language_code) <= 3 and self.language_code.isalpha() and self.language_code.islower()
        ):
            raise ValidationError({"language_code": "Use a lower-case ISO 639-1 code such as en, de or fr."})
        self.user_voice_ids = self._clean_voice_ids(self.user_voice_ids)
        if self.backend == self.Backend.ELEVENLABS_AGENT and not self.elevenlabs_agent_id.strip():
            raise ValidationError({"elevenlabs_agent_id": "The ElevenLabs agent backend needs the vendor's agent id."})
        if self.llm and self.llm not in settings.LLM_PROVIDERS:
            known = ", ".join(settings.LLM_PROVIDERS)
            raise ValidationError({"llm": f"Unknown LLM provider {self.llm!r}; configured: {known}."})

    @staticmethod
    def _clean_voice_ids(value: object) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError({"user_voice_ids": "Give a list of voice IDs."})
        ids = list(dict.fromkeys(v.strip() for v in value if v.strip()))
        if any(len(v) > 100 for v in ids):
            raise ValidationError({"user_voice_ids": "A voice ID is at most 100 characters."})
        if len(ids) > settings.AGENT_USER_VOICES_MAX:
            limit = settings.AGENT_USER_VOICES_MAX
            raise ValidationError({"user_voice_ids": f"Offer at most {limit} voices (AGENT_USER_VOICES_MAX)."})
        return ids

    @property
    def reply_output_format(self) -> str:
        """The PCM format of this agent's replies: its own, else the site's ELEVENLABS_OUTPUT_FORMAT."""
        return self.output_format or settings.ELEVENLABS_OUTPUT_FORMAT


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    voice_id = models.CharField(
        "voice ID", max_length=100, blank=True, help_text="Picked by the user among the agent's; blank: the agent's."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    elevenlabs_conversation_id = models.CharField(
        "ElevenLabs conversation id",
        max_length=100,
        blank=True,
        help_text="The vendor's id of the latest call behind this conversation (ElevenLabs agent backend).",
    )
    elevenlabs_record = models.JSONField(
        "ElevenLabs record",
        default=dict,
        blank=True,
        help_text="Transcripts and metadata fetched from ElevenLabs, by vendor conversation id, for comparison.",
    )

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="conversation_owner_updated")]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.id}"


def audio_upload_to(message: Message, filename: str) -> str:
    return f"audio/{message.conversation_id}/{filename}"


def greeting_upload_to(greeting: Greeting, filename: str) -> str:
    return f"greetings/{greeting.agent_id}/{filename}"


class Greeting(models.Model):
    """An agent's first message, spoken once per voice and model and reused by every conversation."""

    class Status(models.TextChoices):
        PENDING = "pending", "Being synthesised"
        COMPLETE = "complete", "Complete"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="greetings")
    # What makes two greetings sound the same: the text and how it is spoken.
    key = models.CharField(max_length=64, help_text="SHA-256 of text, voice, model, settings and format.")
    text = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    audio = models.FileField(upload_to=greeting_upload_to, blank=True)
    audio_format = models.CharField(max_length=20, blank=True)
    audio_duration_ms = models.PositiveIntegerField("audio duration (ms)", null=True, blank=True)
    words = models.JSONField(default=list, blank=True)
    tts_characters = models.PositiveIntegerField("TTS characters billed", default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["agent", "key"], name="one_greeting_per_voice")]

    def __str__(self) -> str:
        return f"{self.agent}: {self.text[:40]}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        PENDING = "pending"
        STREAMING = "streaming"
        COMPLETE = "complete"
        INTERRUPTED = "interrupted"
        FAILED = "failed"

    class Feedback(models.TextChoices):
        LIKE = "like"
        DISLIKE = "dislike"

    class AudioStatus(models.TextChoices):
        NONE = "none", "No audio"
        PENDING = "pending", "Being synthesised"
        PARTIAL = "partial", "Partial (audio failed mid-reply)"
        COMPLETE = "complete"
        FAILED = "failed"
        BUDGET = "budget", "Stopped (speech allowance used up)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    text = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    audio = models.FileField(upload_to=audio_upload_to, blank=True)
    audio_status = models.CharField(max_length=10, choices=AudioStatus.choices, default=AudioStatus.NONE)
    audio_format = models.CharField(max_length=20, blank=True, help_text="Format the PCM was produced in.")
    audio_duration_ms = models.PositiveIntegerField("audio duration (ms)", null=True, blank=True)
    tts_backend = models.CharField("TTS backend", max_length=100, blank=True)
    tts_characters = models.PositiveIntegerField(
        "TTS characters billed", default=0, help_text="Characters billed by the TTS vendor."
    )
    tts_request_ids = models.JSONField(
        "TTS request IDs",
        default=list,
        blank=True,
        help_text="The vendor's request ids; for an ElevenLabs agent, its conversation id.",
    )
    call_seconds = models.FloatField(
        "agent call seconds",
        null=True,
        blank=True,
        help_text="ElevenLabs agent call time this reply accounts for (billed per minute).",
    )

    llm_first_token_ms = models.PositiveIntegerField(
        "LLM first token (ms)",
        null=True,
        blank=True,
        help_text="From the server receiving the message to the LLM's first token.",
    )
    first_chunk_ms = models.PositiveIntegerField(
        "first speech chunk (ms)",
        null=True,
        blank=True,
        help_text="From the server receiving the message to the first sentence sent for speech.",
    )
    tts_first_byte_ms = models.PositiveIntegerField(
        "TTS first byte (ms)",
        null=True,
        blank=True,
        help_text="From the server receiving the message to the TTS vendor's first audio byte.",
    )
    first_audio_sent_ms = models.PositiveIntegerField(
        "first audio sent (ms)",
        null=True,
        blank=True,
        help_text="From the server receiving the message to the first audio sent to the browser.",
    )
    client_first_audible_ms = models.PositiveIntegerField(
        "first audible (ms)", null=True, blank=True, help_text="From Send until the browser played the first sound."
    )
    client_underruns = models.PositiveIntegerField(
        "underruns", null=True, blank=True, help_text="Times the browser's player ran dry mid-reply."
    )

    feedback = models.CharField(
        max_length=8, choices=Feedback.choices, blank=True, help_text="The listener's like or dislike of a reply."
    )
    feedback_at = models.DateTimeField(null=True, blank=True)
    # A conversation's first message is its agent's greeting; its audio is the greeting's, shared.
    greeting = models.ForeignKey(Greeting, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Word timing of the displayed text: [display_start, display_end, start_ms, end_ms] per spoken word.
    words = models.JSONField(default=list, blank=True)
    heard_text = models.TextField(
        blank=True, help_text="What the listener heard of an interrupted reply (from relayed audio and playback)."
    )
    # Written while a reply streams; a `streaming` row whose heartbeat stopped belongs to a dead process.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="message_conversation_created"),
            models.Index(
                fields=["heartbeat_at"], name="message_streaming_heartbeat", condition=models.Q(status="streaming")
            ),
        ]

    def __str__(self) -> str:
        # What the admin's titles and breadcrumbs show: the words, not the markdown around them.
        words = Truncator(markdown_plain(self.text[:300])).chars(60) or "(no text)"
        return f"{self.get_role_display()}: {words}"


# --- speech budgets (chat/limits/budget.py decides; these hold the counts) ---------------------------


class SpeechAllowance(models.Model):
    """An operator's override of one user's speech allowance; users without a row get the settings' defaults."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="speech_allowance"
    )
    unlimited = models.BooleanField(default=False, help_text="No per-user limit; the site's daily cap still applies.")
    daily_chars = models.PositiveIntegerField(
        "characters a day", null=True, blank=True, help_text="Blank uses SPEECH_DAILY_CHARS; 0 means no speech."
    )
    monthly_chars = models.PositiveIntegerField(
        "characters a month", null=True, blank=True, help_text="Blank uses SPEECH_MONTHLY_CHARS; 0 means no speech."
    )
    note = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "speech allowance"

    def __str__(self) -> str:
        return f"Speech allowance of {self.user}"


class SpeechUsage(models.Model):
    """Characters a user's speech was billed in one day or one month (both rows count every request)."""

    class Period(models.TextChoices):
        DAY = "day"
        MONTH = "month"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="speech_usage")
    period = models.CharField(max_length=5, choices=Period.choices)
    start = models.DateField(help_text="The day, or the first day of the month.")
    characters = models.PositiveIntegerField(default=0)
    limit_chars = models.PositiveIntegerField(null=True, blank=True, help_text="The limit when it was last reached.")
    limited_at = models.DateTimeField(null=True, blank=True, help_text="When speech was first refused in this period.")

    class Meta:
        verbose_name = "speech usage"
        verbose_name_plural = "speech usage"
        ordering = ["-start", "user"]
        constraints = [models.UniqueConstraint(fields=["user", "period", "start"], name="one_usage_row_per_period")]

    def __str__(self) -> str:
        return f"{self.user} {self.period} {self.start}: {self.characters}"


class SiteSpeechUsage(models.Model):
    """Characters the whole site's speech was billed in one day, against SPEECH_SITE_DAILY_CHARS."""

    day = models.DateField(primary_key=True)
    characters = models.PositiveIntegerField(default=0)
    limited_at = models.DateTimeField(null=True, blank=True, help_text="When speech was first refused that day.")

    class Meta:
        verbose_name = "site speech usage"
        verbose_name_plural = "site speech usage"
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"site {self.day}: {self.characters}"


class SpeechCharge(models.Model):
    """One vendor request's bill; its unique request id is what stops a retried report counting twice."""

    request_id = models.CharField(max_length=100, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="speech_charges")
    day = models.DateField()
    characters = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "-created_at"], name="speech_charge_user_created")]

    def __str__(self) -> str:
        return f"{self.request_id}: {self.characters}"


class ApiKey(models.Model):
    """A developer's key for the ElevenLabs-compatible HTTP API (`xi-api-key`); only its SHA-256 is kept."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="What the key is for, e.g. the script that uses it.")
    prefix = models.CharField(max_length=16, editable=False, help_text="The key's first characters, to recognise it.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class SignedUrlUse(models.Model):
    """A signed URL token that has been spent, kept until it would have expired anyway (single use)."""

    nonce = models.CharField(max_length=32, primary_key=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.nonce
