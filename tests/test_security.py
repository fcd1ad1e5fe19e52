"""Hostile inputs found by trying (issue #9) and the browser security headers.

Range headers with thousands of digits, formula cells in the admin's CSV export, Content-Security-Policy
and Permissions-Policy on every kind of response.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from chat.admin import csv_cell
from chat.byte_ranges import RangeNotSatisfiable, byte_range
from chat.models import Conversation, Message
from tests import servers
from tests.conftest import wav_bytes

HUGE = "9" * 5000


# --- Range ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"bytes=0-{HUGE}", (0, 99)),  # a last byte past the end is the end
        (f"bytes=-{HUGE}", (0, 99)),  # a suffix longer than the file is the file
        (f"bytes={'0' * 5000}7-{'0' * 4000}9", (7, 9)),  # leading zeros are not digits that count
        (f"bytes={HUGE}-1", None),  # last before first: ignored, as any invalid range
        ("bytes=٣-٩", None),  # Arabic-Indic digits, which int() would accept: not HTTP syntax
    ],
)
def test_it_reads_ranges_of_any_length_without_converting_them(header: str, expected: Any) -> None:
    assert byte_range(header, 100) == expected


def test_it_answers_a_range_starting_past_any_file_with_416() -> None:
    with pytest.raises(RangeNotSatisfiable):
        byte_range(f"bytes={HUGE}-", 100)


@pytest.mark.parametrize(
    ("header", "status"), [(f"bytes={HUGE}-", 416), (f"bytes=0-{HUGE}", 206), (f"bytes=-{HUGE}", 206)]
)
def test_it_answers_huge_ranges_without_a_server_error(
    client_alice: Any, spoken_reply: Message, header: str, status: int
) -> None:
    response = client_alice.get(f"/api/messages/{spoken_reply.id}/audio/", HTTP_RANGE=header)
    assert response.status_code == status
    if status == 206:
        assert response.content == wav_bytes()


# --- CSV export ----------------------------------------------------------------------------------
@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_it_disarms_cells_a_spreadsheet_would_run(start: str) -> None:
    assert csv_cell(f'{start}HYPERLINK("http://evil")') == f'\'{start}HYPERLINK("http://evil")'


@pytest.mark.parametrize("text", ["Hello", "1+1=2", "", " =not first", "'quoted already"])
def test_it_leaves_other_cells_alone(text: str) -> None:
    assert csv_cell(text) == text


def test_it_exports_a_formula_message_as_text(admin_client: Any, agent: Any) -> None:
    owner = get_user_model().objects.create_user("=cmd|' /C calc'!A0", password="a-long-passphrase-1")
    conversation = Conversation.objects.create(owner=owner, agent=agent, title="x")
    for text in ("=1+2", "@SUM(A1:A9)", "-2+3", "+cmd", "\tx", "plain"):
        Message.objects.create(conversation=conversation, role="user", text=text, status="complete")
    response = admin_client.post(
        "/admin/chat/conversation/", {"action": "export_csv", "_selected_action": [str(conversation.id)]}
    )
    body = response.content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body, newline="")))[1:]
    assert [row[5] for row in rows] == ["'=1+2", "'@SUM(A1:A9)", "'-2+3", "'+cmd", "'\tx", "plain"]
    assert {row[1] for row in rows} == {"'=cmd|' /C calc'!A0"}
    assert all(line.startswith('"') for line in body.splitlines() if line)  # every cell quoted


# --- headers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/accounts/login/", "/api/conversations/", "/admin/"])
def test_it_sends_a_strict_policy_on_every_kind_of_page(admin_client: Any, path: str) -> None:
    response = admin_client.get(path, follow=True)
    policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self'" and policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'self'"
    assert "unsafe" not in response["Content-Security-Policy"]
    features = dict(part.strip().split("=", 1) for part in response["Permissions-Policy"].split(","))
    assert features["microphone"] == "()" and features["camera"] == "()" and features["geolocation"] == "()"
    assert features["autoplay"] == "(self)"


def test_it_sends_the_policy_on_audio_and_errors(client_alice: Any, spoken_reply: Message) -> None:
    responses = [
        client_alice.get(f"/api/messages/{spoken_reply.id}/audio/"),
        client_alice.get("/nowhere/"),
        client_alice.get("/", HTTP_HOST="evil.example"),  # refused by the Host check, before any view
    ]
    assert [r.status_code for r in responses] == [200, 404, 400]
    for response in responses:
        assert "default-src 'self'" in response["Content-Security-Policy"]
        assert "Permissions-Policy" in response


def policy_headers(**env: str) -> list[str]:
    code = (
        "import django; django.setup(); from django.test import Client; "
        "r = Client(HTTP_HOST='localhost').get('/accounts/login/'); "
        "print(r.get('Content-Security-Policy', '-')); print(r.get('Content-Security-Policy-Report-Only', '-'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=servers.ROOT,
        env={**os.environ, "DEBUG": "true", "DJANGO_SETTINGS_MODULE": "voicechat.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_it_can_report_only_and_send_reports() -> None:
    enforced, report_only = policy_headers(CSP_REPORT_ONLY="true", CSP_REPORT_URI="https://reports.example.net/csp")
    assert enforced == "-"
    assert "default-src 'self'" in report_only and "report-uri https://reports.example.net/csp" in report_only
    enforced, report_only = policy_headers()
    assert "default-src 'self'" in enforced and "report-uri" not in enforced and report_only == "-"
