"""The agent form's voice fields: choices from the provider's library with a preview player, or plain text
fields saying why when the library cannot be read (the vendor is unreachable, the key may not list voices)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.conf import settings
from django.urls import reverse

from chat import voices
from chat.providers import tts_provider
from chat.providers.base import ProviderError, TTSModel, Voice

_PLACEHOLDER = "__voice__"


class VoicePreviewSelect(forms.Select):
    """Options of voices with a sample carry `data-preview`; static/site/voice-preview.js adds the player."""

    previewable: frozenset[str] = frozenset()

    def create_option(
        self,
        name: str,
        value: Any,
        label: int | str,
        selected: bool,
        index: int,
        subindex: int | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        if str(value) in self.previewable:
            option["attrs"]["data-preview"] = "1"
        return option


class VoicePreviewSelectMultiple(VoicePreviewSelect, forms.SelectMultiple):
    allow_multiple_selected = True


class VoiceIdsField(forms.CharField):
    """The allowed voices typed as IDs, one a line or comma-separated, when the library cannot be listed."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return list(dict.fromkeys(part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()))


def _grouped(library: Iterable[Voice], extra: Iterable[str] = ()) -> list[tuple[str, list[tuple[str, str]]]]:
    """Voices grouped by the vendor's category, names in order; ids not in the library kept in their own group."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for voice in sorted(library, key=lambda v: (v.category, v.name.lower())):
        label = (
            f"{voice.name} — {voice.language}" if voice.language and voice.language not in voice.name else voice.name
        )
        groups.setdefault(voice.category.title() or "Voices", []).append((voice.voice_id, label))
    known = {voice.voice_id for voice in library}
    missing = [(i, f"{i} (not in the library)") for i in dict.fromkeys(extra) if i and i not in known]
    return [*groups.items(), *([("Not in the library", missing)] if missing else [])]


def _model_label(model: TTSModel) -> str:
    pauses = " · pauses" if voices.breaks_supported(model.model_id) else ""
    return f"{model.name} ({model.model_id}){pauses}"


def voice_fields(form: forms.ModelForm) -> None:
    """Swap the agent form's voice_id, tts_model_id and user_voice_ids for choices from the library."""
    tts = tts_provider()
    instance = form.instance
    try:
        library = voices.voice_library()
    except ProviderError as exc:
        library, voice_error = [], exc.message
    else:
        voice_error = "" if library else "The TTS backend has no voice library."
    if library:
        default = ("", f"Default voice ({tts.default_voice_id})")
        _voice_choices(form, library, tts.metered, default, instance.voice_id, instance.user_voice_ids or [])
    else:
        form.fields["user_voice_ids"] = VoiceIdsField(
            label="Voices users may pick", required=False, help_text="Voice IDs, one a line."
        )
        for name in ("voice_id", "user_voice_ids"):
            form.fields[name].help_text = f"{form.fields[name].help_text} {voice_error} Type the IDs instead."
    _model_choices(form, tts.default_model_id)


def _voice_choices(
    form: forms.ModelForm,
    library: list[Voice],
    bills: bool,
    default: tuple[str, str],
    current: str,
    allowed: list[str],
) -> None:
    previewable = frozenset(
        v.voice_id for v in library if (v.preview_url and voices.preview_url_allowed(v.preview_url)) or not bills
    )
    url = reverse("admin:chat_agent_voice_preview", kwargs={"voice_id": _PLACEHOLDER})
    attrs = {"data-preview-url": url, "data-preview-placeholder": _PLACEHOLDER}
    single, multiple = VoicePreviewSelect(attrs=attrs), VoicePreviewSelectMultiple(attrs=attrs | {"size": 10})
    single.previewable = multiple.previewable = previewable
    form.fields["voice_id"] = forms.ChoiceField(
        label="Voice",
        required=False,
        choices=[default, *_grouped(library, [current])],
        widget=single,
        help_text="From the account's voice library; pick one and press play to hear it.",
    )
    limit = settings.AGENT_USER_VOICES_MAX
    form.fields["user_voice_ids"] = forms.MultipleChoiceField(
        label="Voices users may pick",
        required=False,
        choices=_grouped(library, allowed),
        widget=multiple,
        help_text=f"Besides the agent's own voice; up to {limit}. Ctrl- or ⌘-click picks several.",
    )


def _model_choices(form: forms.ModelForm, default: str) -> None:
    try:
        models = voices.model_library()
    except ProviderError as exc:
        form.fields["tts_model_id"].help_text = f"{exc.message} Type the model ID instead."
        return
    if not models:
        form.fields["tts_model_id"].help_text = "The TTS backend offers no choice of model."
        return
    current = form.instance.tts_model_id
    choices = [("", f"Default model ({default})"), *((m.model_id, _model_label(m)) for m in models)]
    if current and current not in {m.model_id for m in models}:
        choices.append((current, f"{current} (not offered by the account)"))
    form.fields["tts_model_id"] = forms.ChoiceField(
        label="TTS model",
        required=False,
        choices=choices,
        help_text="The account's models that can speak; “pauses” marks those that honour <break> tags.",
    )
