"""Which conversation_initiation_client_data overrides an agent allows (chat/overrides.py), parsed as the
consumer parses them (chat/protocol.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat.limits import Refusal
from chat.models import Agent
from chat.overrides import SessionOverrides, session_overrides
from chat.protocol import ClientData, FrameError, parse_client_frame

pytestmark = pytest.mark.django_db

# What @elevenlabs/client 1.25.0 sends for startSession({textOnly: true}) with no overrides: the unset
# options are `undefined` and vanish from the JSON, leaving empty sections.
JS_TEXT_ONLY = {
    "type": "conversation_initiation_client_data",
    "conversation_config_override": {"agent": {}, "tts": {}, "conversation": {"text_only": True}},
    "source_info": {"source": "js_sdk", "version": "1.25.0"},
}
# What elevenlabs 2.78.0's Conversation sends without an audio interface (text_only at the top, its quirk).
PYTHON_TEXT_ONLY = {
    "type": "conversation_initiation_client_data",
    "custom_llm_extra_body": {},
    "conversation_config_override": {"text_only": True},
    "dynamic_variables": {},
    "source_info": {"source": "python_sdk", "version": "2.78.0"},
}


def parsed(message: dict[str, Any]) -> ClientData:
    frame = parse_client_frame(json.dumps(message))
    assert isinstance(frame, ClientData)
    return frame


def overrides(agent: Agent, override: dict[str, Any]) -> SessionOverrides:
    data = parsed({"type": "conversation_initiation_client_data", "conversation_config_override": override})
    return session_overrides(agent=agent, data=data)


def refused(agent: Agent, override: dict[str, Any]) -> Refusal:
    with pytest.raises(Refusal) as info:
        overrides(agent, override)
    return info.value


def test_it_reads_text_only_and_no_override_from_what_both_sdks_send(agent) -> None:
    for sent in (JS_TEXT_ONLY, PYTHON_TEXT_ONLY):
        data = parsed(sent)
        assert data.text_only is True and session_overrides(agent=agent, data=data) == SessionOverrides()
    assert overrides(agent, {}) == SessionOverrides()


def test_it_refuses_every_override_an_agent_does_not_allow(agent) -> None:
    for override in ({"tts": {"voice_id": "abc"}}, {"agent": {"first_message": "Hi"}}, {"agent": {"language": "de"}}):
        refusal = refused(agent, override)
        assert refusal.code == "override_not_allowed" and "operator can allow it" in refusal.message


def test_it_applies_the_overrides_an_agent_allows(agent) -> None:
    Agent.objects.filter(pk=agent.pk).update(
        allow_voice_override=True, allow_first_message_override=True, allow_language_override=True
    )
    agent.refresh_from_db()
    override = {"tts": {"voice_id": "21m00Tcm4TlvDq8ikWAM"}, "agent": {"first_message": "Hallo!", "language": "de"}}
    got = overrides(agent, override)
    assert got == SessionOverrides(voice_id="21m00Tcm4TlvDq8ikWAM", first_message="Hallo!", language="de")


def test_it_allows_each_override_on_its_own(agent) -> None:
    agent.allow_language_override = True
    assert overrides(agent, {"agent": {"language": "fr"}}).language == "fr"
    assert refused(agent, {"tts": {"voice_id": "abc"}}).code == "override_not_allowed"


def test_it_refuses_overrides_voicechat_has_no_switch_for(agent) -> None:
    agent.allow_voice_override = agent.allow_first_message_override = agent.allow_language_override = True
    for override in ({"agent": {"prompt": {"prompt": "Be rude."}}}, {"tts": {"speed": 1.1}}, {"tts": {"stability": 0}}):
        refusal = refused(agent, override)
        assert refusal.code == "override_not_allowed" and "not supported" in refusal.message


@pytest.mark.parametrize(
    "override",
    [{"tts": {"voice_id": "../../etc"}}, {"agent": {"language": "English"}}, {"agent": {"first_message": "x" * 4001}}],
)
def test_it_refuses_allowed_overrides_with_bad_values_as_invalid_messages(agent, override) -> None:
    agent.allow_voice_override = agent.allow_first_message_override = agent.allow_language_override = True
    assert refused(agent, override).code == "invalid_message"


@pytest.mark.parametrize(
    "override",
    [
        {"tts": {"voice_id": 42}},
        {"agent": {"first_message": ["Hi"]}},
        {"conversation": {"text_only": "yes"}},
        {"tts": "fast"},
    ],
)
def test_it_refuses_overrides_of_the_wrong_type_when_parsing(agent, override) -> None:
    with pytest.raises(FrameError):
        overrides(agent, override)


def test_it_ignores_what_has_no_effect_without_speech_input(agent) -> None:
    assert overrides(agent, {"asr": {"keywords": ["voicechat"]}}) == SessionOverrides()
