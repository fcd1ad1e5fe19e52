"""Forms of the account pages and the admin."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import UserCreationForm, UsernameField
from django.contrib.auth.models import User

from chat.models import Agent


class SignupForm(UserCreationForm):
    """Open registration: a user name and a password typed twice, checked by AUTH_PASSWORD_VALIDATORS."""

    class Meta:
        model = User
        fields = ("username",)
        field_classes = {"username": UsernameField}


class AgentAdminForm(forms.ModelForm):
    """Names the agent that already is the default, instead of a bare constraint violation."""

    class Meta:
        model = Agent
        fields = [
            "name",
            "system_prompt",
            "first_message",
            "is_default",
            "is_active",
            "llm",
            "voice_id",
            "tts_model_id",
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

    def clean_is_default(self) -> bool:
        is_default: bool = self.cleaned_data["is_default"]
        current = Agent.objects.filter(is_default=True).exclude(pk=self.instance.pk).first()
        if is_default and current is not None:
            raise forms.ValidationError(f"{current.name} is the default agent; untick it there first.")
        return is_default


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. the script that uses it.")
