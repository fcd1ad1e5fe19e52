"""The operator's admin: agents with validated voice settings, and transcripts to search, filter and export."""

from __future__ import annotations

import csv
import datetime as dt
import html as html_lib
import io
import json
import re
from html.parser import HTMLParser

import pytest
from django.utils import timezone
from django.utils.html import strip_tags

from chat.markup import markdown_html
from chat.models import Agent, Conversation, Message
from tests.admin_data import HOSTILE_QUESTION, review_conversation

pytestmark = pytest.mark.django_db

TRICKY_TEXT = 'Price, "quoted"\nnext line'
AGENT_FORM = {
    "name": "Loud",
    "llm": "",
    "stability": "0.5",
    "similarity_boost": "0.75",
    "style": "0",
    "speed": "1",
    "tts_transport": "http",
    "language_code": "en",
    "is_active": "on",
}


@pytest.fixture
def transcript(user, agent) -> Conversation:
    conversation = Conversation.objects.create(owner=user, agent=agent, title="Billing")
    Message.objects.create(conversation=conversation, role="user", text=TRICKY_TEXT, status="complete")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        text="It is 5 €.",
        status="interrupted",
        llm_first_token_ms=120,
        first_audio_sent_ms=480,
        client_underruns=2,
    )
    return conversation


@pytest.fixture
def weather(other_user, agent) -> Conversation:
    conversation = Conversation.objects.create(owner=other_user, agent=agent, title="Weather")
    Message.objects.create(conversation=conversation, role="user", text="Rain tomorrow?", status="complete")
    return conversation


@pytest.fixture
def review(user, agent, media_root) -> Conversation:
    return review_conversation(owner=user, agent=agent)


def changelist(admin_client, model: str, **params: object) -> list:
    response = admin_client.get(f"/admin/chat/{model}/", params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def transcript_turns(admin_client, conversation: Conversation) -> list[str]:
    """The HTML of each message block of the conversation's admin page, in page order."""
    response = admin_client.get(f"/admin/chat/conversation/{conversation.id}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    section = page[page.index('class="inline-group vc-transcript"') : page.index('class="submit-row"')]
    return section.split('<article class="vc-turn ')[1:]


def part(turn: str, name: str) -> str:
    """One part (heading, body, player, details) of a message block, or "" when the block has none."""
    marker = f'<div class="vc-turn-{name}">'
    if marker not in turn:
        return ""
    return turn[turn.index(marker) + len(marker) : turn.index("</div>\n", turn.index(marker))]


class Elements(HTMLParser):
    """Every element a browser would build from the HTML, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def text(fragment: str) -> str:
    return " ".join(html_lib.unescape(strip_tags(fragment)).split())


def export(admin_client, action: str, *conversations: Conversation):
    selected = [str(c.id) for c in conversations]
    return admin_client.post("/admin/chat/conversation/", {"action": action, "_selected_action": selected})


# --- agents --------------------------------------------------------------------------------------


def test_it_lists_agents_with_their_voice(admin_client, agent) -> None:
    response = admin_client.get("/admin/chat/agent/")
    assert response.status_code == 200
    columns = response.context["cl"].list_display[1:]  # after the selection checkbox
    assert columns == ["name", "is_default", "is_active", "llm", "voice_id", "tts_model_id", "language_code"]
    assert list(response.context["cl"].result_list) == [agent]
    form_page = admin_client.get("/admin/chat/agent/add/").content.decode()
    assert re.findall(r'class="fieldset-heading">([^<]+)</h2>', form_page) == [
        "Persona",
        "Backend",
        "LLM",
        "Voice",
        "Voices users may pick",
        "Client overrides",
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stability", "1.01"),
        ("stability", "-0.1"),
        ("similarity_boost", "1.5"),
        ("similarity_boost", "-1"),
        ("style", "2"),
        ("style", "-0.01"),
        ("speed", "0.69"),
        ("speed", "1.21"),
        ("language_code", "English"),
        ("llm", "nope"),
    ],
)
def test_it_rejects_out_of_range_agent_settings(admin_client, field, value) -> None:
    response = admin_client.post("/admin/chat/agent/add/", {**AGENT_FORM, field: value})
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == [field]
    assert not Agent.objects.filter(name="Loud").exists()


@pytest.mark.parametrize(
    "values",
    [
        {"stability": "0", "similarity_boost": "0", "style": "0", "speed": "0.7"},
        {"stability": "1", "similarity_boost": "1", "style": "1", "speed": "1.2"},
    ],
)
def test_it_accepts_agent_settings_at_the_edges(admin_client, values) -> None:
    response = admin_client.post("/admin/chat/agent/add/", {**AGENT_FORM, **values, "llm": "demo"})
    assert response.status_code == 302
    assert Agent.objects.get(name="Loud").speed == float(values["speed"])


def test_it_refuses_a_second_default_agent_with_a_message(admin_client, agent) -> None:
    response = admin_client.post("/admin/chat/agent/add/", {**AGENT_FORM, "is_default": "on"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "is_default": ["Assistant is the default agent; untick it there first."]
    }
    assert Agent.objects.filter(is_default=True).count() == 1


def test_it_lets_the_default_agent_be_edited(admin_client, agent) -> None:
    form = {**AGENT_FORM, "name": "Assistant 2", "is_default": "on"}
    assert admin_client.post(f"/admin/chat/agent/{agent.id}/change/", form).status_code == 302
    agent.refresh_from_db()
    assert (agent.name, agent.is_default) == ("Assistant 2", True)


# --- transcripts ---------------------------------------------------------------------------------


def test_it_lists_conversations_with_message_counts(admin_client, transcript, weather) -> None:
    rows = changelist(admin_client, "conversation", o="4")  # sorted by the message count column
    assert [(c.title, c.num_messages) for c in rows] == [("Weather", 1), ("Billing", 2)]
    rows = changelist(admin_client, "conversation", o="-4")
    assert [c.title for c in rows] == ["Billing", "Weather"]


@pytest.mark.parametrize(
    ("query", "titles"), [("quoted", ["Billing"]), ("mallory", ["Weather"]), ("bill", ["Billing"])]
)
def test_it_searches_transcripts_by_text_owner_and_title(admin_client, transcript, weather, query, titles) -> None:
    assert [c.title for c in changelist(admin_client, "conversation", q=query)] == titles


def test_it_lists_a_conversation_once_when_several_messages_match(admin_client, transcript) -> None:
    Message.objects.create(conversation=transcript, role="user", text="quoted again", status="complete")
    rows = changelist(admin_client, "conversation", q="quoted")
    assert [(c.title, c.num_messages) for c in rows] == [("Billing", 3)]


def test_it_filters_by_message_status_without_inflating_counts(admin_client, transcript, weather) -> None:
    Message.objects.create(conversation=transcript, role="assistant", text="again", status="interrupted")
    rows = changelist(admin_client, "conversation", message_status="interrupted")
    assert [(c.title, c.num_messages) for c in rows] == [("Billing", 3)]
    assert changelist(admin_client, "conversation", message_status="failed") == []
    assert [c.title for c in changelist(admin_client, "conversation", message_status="complete")] == [
        "Weather",
        "Billing",
    ]


def test_it_filters_by_agent_and_date(admin_client, transcript, weather) -> None:
    poet = Agent.objects.create(name="Poet")
    Conversation.objects.filter(pk=weather.pk).update(agent=poet, created_at=timezone.now() - dt.timedelta(days=40))
    assert changelist(admin_client, "conversation", agent__id__exact=poet.id) == [weather]
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    today = {"created_at__gte": str(midnight), "created_at__lt": str(midnight + dt.timedelta(days=1))}
    assert changelist(admin_client, "conversation", **today) == [transcript]  # the "Today" link


def test_it_shows_the_transcript_in_order_with_audio_and_timings(admin_client, transcript, spoken_reply) -> None:
    spoken_reply.conversation = transcript
    spoken_reply.save()
    turns = transcript_turns(admin_client, transcript)
    assert [text(part(turn, "body")) for turn in turns] == ['Price, "quoted" next line', "It is 5 €.", "Hi."]
    assert f'<audio controls preload="none" src="/api/messages/{spoken_reply.id}/audio/">' in part(turns[2], "player")
    assert text(part(turns[1], "details")) == "LLM 120 ms · first audio 480 ms · 2 underruns"
    assert admin_client.get(f"/api/messages/{spoken_reply.id}/audio/").status_code == 200


def test_it_heads_each_transcript_message_with_its_role_and_time(admin_client, review) -> None:
    turns = transcript_turns(admin_client, review)
    headings = [part(turn, "heading") for turn in turns]
    assert [re.search(r'class="vc-role">(\w+)<', h)[1] for h in headings] == ["User", "Assistant"] * 3  # type: ignore[index]
    first = review.messages.order_by("created_at")[0]
    assert f'<time datetime="{first.created_at.isoformat()}"' in headings[0]
    messages = review.messages.order_by("created_at")
    assert all(f"/admin/chat/message/{m.id}/change/" in h for m, h in zip(messages, headings, strict=True))
    page = "".join(turns)
    assert "assistant: " not in page and "user: " not in page  # the raw __str__ of the old inline


def test_it_renders_a_replys_markdown_instead_of_showing_it(admin_client, review) -> None:
    body = part(transcript_turns(admin_client, review)[1], "body")
    assert "<h3>Streaming speech</h3>" in body
    assert "<strong>streaming</strong>" in body and "<em>while</em>" in body
    assert "<ol>" in body and "<li>The LLM streams tokens.</li>" in body
    assert "<code>/stream</code>" in body
    assert '<pre><code>TTS_BACKEND = "elevenlabs"\nif chunk &lt; limit:\n    speak(chunk)\n</code></pre>' in body
    assert "###" not in body and "**" not in body and "```" not in body


def test_it_shows_html_in_a_message_as_typed_and_never_runs_it(admin_client, review) -> None:
    body = part(transcript_turns(admin_client, review)[2], "body")
    assert text(body) == HOSTILE_QUESTION.replace("[link](javascript:alert(2))", "link")
    assert "What does &lt;script&gt;alert('x')&lt;/script&gt; do? &lt;img src=x onerror=alert(1)&gt;" in body
    assert '<a rel="noopener noreferrer nofollow">link</a>' in body  # the javascript: target is gone
    assert "<script" not in body and "<img" not in body and "javascript:" not in body


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        '<a href="javascript:alert(1)">x</a>',
        "[x](javascript:alert(1))",
        "[x](  JaVaScRiPt:alert(1))",
        "[x]: javascript:alert(1)\n\n[y][x]",
        "![x](https://tracker.example/pixel.png)",
        '<div style="position:fixed;inset:0">cover</div>',
        "<iframe src=https://example.com></iframe>",
        "```\n</code></pre><script>alert(1)</script>\n```",
        "`<svg onload=alert(1)>`",
        "<<script>script>alert(1)<</script>/script>",
    ],
)
def test_it_renders_hostile_markdown_as_inert_html(hostile) -> None:
    elements = Elements()
    elements.feed(str(markdown_html(hostile)))
    assert {tag for tag, _ in elements.found} <= {"p", "a", "pre", "code", "br"}
    for _, attrs in elements.found:
        assert set(attrs) <= {"href", "rel", "title"}, attrs
        assert re.match(r"(https?|mailto):", attrs.get("href") or "https:"), attrs


def test_it_keeps_links_with_safe_schemes_and_marks_them_nofollow() -> None:
    rendered = str(markdown_html("See [the docs](https://elevenlabs.io/docs) or <https://example.com>."))
    assert '<a href="https://elevenlabs.io/docs" rel="noopener noreferrer nofollow">the docs</a>' in rendered
    assert '<a href="https://example.com" rel="noopener noreferrer nofollow">https://example.com</a>' in rendered


def test_it_keeps_a_typed_line_break() -> None:
    assert str(markdown_html("first line\nsecond line")) == "<p>first line<br>\nsecond line</p>"


def test_it_puts_a_replys_timings_on_one_line_with_units_and_its_cost(admin_client, review) -> None:
    turns = transcript_turns(admin_client, review)
    details = part(turns[1], "details")
    lines = [text(line) for line in re.findall(r'<div class="vc-line">(.*?)</div>', details)]
    assert lines == [
        "LLM 212 ms · first chunk 268 ms · TTS 391 ms · first audio 402 ms · heard 483 ms · 2.4 s audio",
        "187 characters billed · elevenlabs",
    ]
    assert (
        'title="LLM first token (ms): From the server receiving the message to the LLM&#x27;s first token."' in details
    )
    interrupted = text(part(turns[3], "details"))
    assert interrupted.startswith("LLM 198 ms") and "1.1 s audio · 1 underrun" in interrupted
    assert 'class="vc-figure vc-warn"' in part(turns[3], "details")


def test_it_shows_status_and_audio_badges_in_their_colours(admin_client, review) -> None:
    heading = [part(turn, "heading") for turn in transcript_turns(admin_client, review)]
    assert (
        '<span class="vc-badge vc-ok">Complete</span> <span class="vc-badge vc-ok">Audio complete</span>' in heading[1]
    )
    assert '<span class="vc-badge vc-warn">Interrupted</span>' in heading[3]
    assert '<span class="vc-badge vc-warn" title="Partial (audio failed mid-reply)">Audio partial</span>' in heading[3]
    assert '<span class="vc-badge vc-bad" title="llm_unavailable: The language model' in heading[5]
    assert "vc-badge" not in heading[0]  # a user's message is complete once stored: no badge to read


def test_it_shows_the_error_of_a_failed_reply(admin_client, review) -> None:
    failed = transcript_turns(admin_client, review)[5]
    assert text(part(failed, "details")) == "llm_unavailable: The language model did not answer within 30 seconds."
    assert text(part(failed, "body")) == "(no text)"
    assert part(failed, "player") == ""


def test_it_shows_no_audio_or_timings_for_a_users_message(admin_client, review) -> None:
    turns = transcript_turns(admin_client, review)
    for turn in turns[0::2]:
        assert (part(turn, "player"), part(turn, "details")) == ("", "")
    for turn in turns[1:4:2]:
        assert "<audio" in part(turn, "player") and "ms" in part(turn, "details")


def test_it_saves_a_conversation_title_past_the_read_only_transcript(admin_client, review) -> None:
    url = f"/admin/chat/conversation/{review.id}/change/"
    page = admin_client.get(url).content.decode()
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    assert form["messages-TOTAL_FORMS"] == "6"
    response = admin_client.post(url, {**form, "title": "Renamed"})
    assert response.status_code == 302, response.context and response.context["errors"]
    review.refresh_from_db()
    assert review.title == "Renamed"
    assert review.messages.count() == 6
    assert (
        review.messages.filter(role="user").first().text
        == "How does streaming speech work? Show me the setting, please."
    )


def test_it_sums_the_speech_billed_per_conversation(admin_client, review, transcript) -> None:
    rows = changelist(admin_client, "conversation", q="streaming")  # matches several messages: one row
    assert [(c.title, c.billed) for c in rows] == [("How streaming speech works", 187 + 64)]
    page = admin_client.get(f"/admin/chat/conversation/{review.id}/change/").content.decode()
    assert "251 characters billed for 2 spoken replies · 3.5 s audio" in page
    page = admin_client.get(f"/admin/chat/conversation/{transcript.id}/change/").content.decode()
    assert "no spoken replies" in page


def test_it_deletes_conversations_with_their_audio_from_the_admin(
    admin_client, conversation, spoken_reply, django_capture_on_commit_callbacks
) -> None:
    path = spoken_reply.audio.path
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/chat/conversation/",
            {"action": "delete_selected", "_selected_action": [str(conversation.id)], "post": "yes"},
        )
    assert response.status_code == 302
    assert not Conversation.objects.exists()
    with pytest.raises(FileNotFoundError):
        open(path, "rb")  # noqa: SIM115


# --- exports -------------------------------------------------------------------------------------


def test_it_exports_transcripts_as_json(admin_client, transcript, weather) -> None:
    response = export(admin_client, "export_json", transcript, weather)
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert 'filename="conversations.json"' in response["Content-Disposition"]
    data = json.loads(response.content)
    by_title = {c["title"]: c for c in data["conversations"]}
    assert set(by_title) == {"Billing", "Weather"}
    billing = by_title["Billing"]
    assert (billing["id"], billing["owner"], billing["agent"]) == (str(transcript.id), "alice", "Assistant")
    assert [(m["role"], m["status"], m["text"]) for m in billing["messages"]] == [
        ("user", "complete", TRICKY_TEXT),
        ("assistant", "interrupted", "It is 5 €."),
    ]
    assert billing["messages"][1]["first_audio_sent_ms"] == 480
    assert dt.datetime.fromisoformat(billing["messages"][0]["time"]).tzinfo is not None


def test_it_exports_transcripts_as_csv(admin_client, transcript, weather) -> None:
    response = export(admin_client, "export_csv", transcript)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="conversations.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["conversation_id", "owner", "time", "role", "status", "text"]
    assert len(rows) == 3  # the header and one row per message of the selected conversation only
    assert rows[1][:2] == [str(transcript.id), "alice"]
    assert rows[1][3:] == ["user", "complete", TRICKY_TEXT]
    assert rows[2][3:] == ["assistant", "interrupted", "It is 5 €."]
    first = transcript.messages.order_by("created_at").first()
    assert first is not None and dt.datetime.fromisoformat(rows[1][2]) == first.created_at


# --- messages ------------------------------------------------------------------------------------


def test_it_lists_filters_and_searches_messages(admin_client, transcript, weather) -> None:
    assert len(changelist(admin_client, "message")) == 3
    assert [m.text for m in changelist(admin_client, "message", status__exact="interrupted")] == ["It is 5 €."]
    assert [m.text for m in changelist(admin_client, "message", role__exact="user", q="rain")] == ["Rain tomorrow?"]
    assert changelist(admin_client, "message", audio_status__exact="failed") == []
    assert {m.text for m in changelist(admin_client, "message", q="mallory")} == {"Rain tomorrow?"}
    assert len(changelist(admin_client, "message", q="billing")) == 2  # by conversation title


def test_it_lists_messages_newest_first_with_text_conversation_and_owner(admin_client, review, weather) -> None:
    response = admin_client.get("/admin/chat/message/")
    columns = response.context["cl"].list_display[1:]
    assert columns == [
        "when",
        "text_preview",
        "role",
        "status_badge",
        "audio_badge",
        "conversation_title",
        "owner",
        "billed",
        "heard",
        "feedback",
    ]
    rows = list(response.context["cl"].result_list)
    assert rows == sorted(rows, key=lambda m: m.created_at, reverse=True)
    page = response.content.decode()
    assert '<span class="vc-preview" title="Streaming speech Good question about streaming. The reply' in page
    assert 'title="What does &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; do? &lt;img src=x onerror' in page
    assert "<script>alert" not in page
    assert '<td class="field-owner">alice</td>' in page and '<td class="field-owner">mallory</td>' in page
    assert f'href="/admin/chat/conversation/{review.id}/change/" title="How streaming speech works"' in page
    assert '<td class="field-billed">187</td>' in page and '<td class="field-heard">483 ms</td>' in page
    failed = 'title="The language model did not answer within 30 seconds.">(llm_unavailable)</span>'
    assert f'<span class="vc-preview vc-empty" {failed}' in page


def test_it_labels_fields_and_choices_as_a_person_would_write_them(admin_client, review) -> None:
    reply = review.messages.filter(role="assistant", audio_status="complete").get()
    page = admin_client.get(f"/admin/chat/message/{reply.id}/change/").content.decode()
    labels = re.findall(r"<label>([^<]+):</label>", page)
    for label in [
        "LLM first token (ms)",
        "TTS first byte (ms)",
        "TTS characters billed",
        "TTS request IDs",
        "Audio duration (ms)",
    ]:
        assert label in labels
    assert not [label for label in labels if re.search(r"\b(Llm|Tts|ms)\b", label) and "(ms)" not in label]
    listing = admin_client.get("/admin/chat/message/").content.decode()
    assert "Partial (audio failed mid-reply)" in listing and "partial (audio failed" not in listing
    assert [label for _, label in Message.AudioStatus.choices] == [
        "No audio",
        "Being synthesised",
        "Partial (audio failed mid-reply)",
        "Complete",
        "Failed",
        "Stopped (speech allowance used up)",
    ]


def test_it_shows_only_the_sections_a_message_has(admin_client, review) -> None:
    def sections(message: Message) -> list[str]:
        page = admin_client.get(f"/admin/chat/message/{message.id}/change/").content.decode()
        return re.findall(r'class="fieldset-heading">([^<]+)</h2>', page)

    user, reply, *_ = review.messages.order_by("created_at")
    failed = review.messages.get(status="failed")
    assert sections(user) == ["Source text"]
    assert sections(reply) == ["Audio and cost", "Timings", "Source text"]
    assert sections(failed) == ["Error", "Audio and cost", "Timings", "Source text"]


def test_it_shows_a_messages_text_rendered_and_its_source_as_stored(admin_client, review) -> None:
    reply = review.messages.filter(role="assistant", audio_status="complete").get()
    page = admin_client.get(f"/admin/chat/message/{reply.id}/change/").content.decode()
    assert '<div class="vc-text"><h3>Streaming speech</h3>' in page
    assert "### Streaming speech<br>" in page  # the stored text, escaped, under "Source text"
    title = re.search(r"<title>([^<]*)</title>", page)[1]  # type: ignore[index]
    assert title.startswith("Assistant: Streaming speech Good question about streaming. The")
    assert str(review.messages.get(status="failed")) == "Assistant: (no text)"


def test_it_shows_a_message_read_only_with_its_player(admin_client, spoken_reply) -> None:
    response = admin_client.get(f"/admin/chat/message/{spoken_reply.id}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'<audio controls preload="none" src="/api/messages/{spoken_reply.id}/audio/">' in html
    assert 'name="_save"' not in html
    before = spoken_reply.text
    admin_client.post(f"/admin/chat/message/{spoken_reply.id}/change/", {"text": "rewritten"})
    spoken_reply.refresh_from_db()
    assert spoken_reply.text == before


def test_it_keeps_the_admin_from_ordinary_users(client_alice, transcript) -> None:
    response = client_alice.get("/admin/chat/conversation/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
