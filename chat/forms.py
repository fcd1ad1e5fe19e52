"""Forms of the account pages and the admin."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import UserCreationForm, UsernameField
from django.contrib.auth.models import User
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from chat.admin_voices import voice_fields
from chat.elevenlabs_agents import VendorAgent, agent_choices
from chat.models import Agent


class SignupForm(UserCreationForm):
    """Open registration: a user name and a password typed twice, checked by AUTH_PASSWORD_VALIDATORS."""

    class Meta:
        model = User
        fields = ("username",)
        field_classes = {"username": UsernameField}


class VendorAgentInput(forms.TextInput):
    """A text box for an ElevenLabs agent id that suggests the account's agents (a <datalist>)."""

    def __init__(self, agents: list[VendorAgent]) -> None:
        super().__init__(attrs={"list": "elevenlabs-agents", "autocomplete": "off", "size": 40})
        self.agents = agents

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> SafeString:
        options = format_html_join("", '<option value="{}">{}</option>', ((a.agent_id, a.name) for a in self.agents))
        box = super().render(name, value, attrs, renderer)
        return format_html('{}<datalist id="elevenlabs-agents">{}</datalist>', box, options)


class AgentAdminForm(forms.ModelForm):
    """Voices and models from the provider's library; names the agent that already is the default."""

    class Meta:
        model = Agent
        fields = [
            "name",
            "backend",
            "elevenlabs_agent_id",
            "system_prompt",
            "first_message",
            "is_default",
            "is_active",
            "llm",
            "voice_id",
            "tts_model_id",
            "user_voice_ids",
            "allow_breaks",
            "language_code",
            "stability",
            "similarity_boost",
            "style",
            "speed",
            "use_speaker_boost",
            "output_format",
            "allow_voice_override",
            "allow_first_message_override",
            "allow_language_override",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        voice_fields(self)
        self.fields["backend"].required = False  # a form that does not mention it keeps the agent's backend
        field = self.fields["elevenlabs_agent_id"]
        agents, problem = agent_choices()
        field.widget = VendorAgentInput(agents)
        field.help_text = f"{field.help_text} " + (
            f"Pick one of your {len(agents)} ElevenLabs agents, or type an id." if agents else problem
        )

    def clean_backend(self) -> str:
        return str(self.cleaned_data.get("backend") or self.instance.backend or Agent.Backend.LLM_TTS)

    def clean_is_default(self) -> bool:
        is_default: bool = self.cleaned_data["is_default"]
        current = Agent.objects.filter(is_default=True).exclude(pk=self.instance.pk).first()
        if is_default and current is not None:
            raise forms.ValidationError(f"{current.name} is the default agent; untick it there first.")
        return is_default


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. the script that uses it.")
