"""The plain pages around the chat: their icon, the app's own 404 page, form errors, and `make run`'s set-up."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest

from chat.models import Conversation

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
ICON_LINK = '<link rel="icon" href="/static/site/favicon.svg" type="image/svg+xml">'


@pytest.fixture
def debug(settings) -> None:
    """DEBUG on, as under `make run`: Django would answer a raised Http404 with its technical page."""
    settings.DEBUG = True


@pytest.mark.parametrize("path", ["/accounts/login/", "/accounts/signup/", "/admin/login/"])
def test_it_links_the_icon_from_pages_before_login(client, path) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert ICON_LINK in response.content.decode()


@pytest.mark.parametrize("path", ["/", "/accounts/password_change/", f"/c/{uuid.uuid4()}/"])
def test_it_links_the_icon_from_pages_after_login(client_alice, path) -> None:
    assert ICON_LINK in client_alice.get(path).content.decode()


def test_it_links_the_icon_from_every_admin_page(admin_client, conversation) -> None:
    for path in ["/admin/", "/admin/chat/message/", f"/admin/chat/conversation/{conversation.id}/change/"]:
        assert ICON_LINK in admin_client.get(path).content.decode(), path


def test_it_serves_the_icon(client) -> None:
    response = client.get("/static/site/favicon.svg")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/svg+xml")
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert body.startswith(b'<svg xmlns="http://www.w3.org/2000/svg"')


def test_it_sends_a_request_for_favicon_ico_to_the_icon(client) -> None:
    # What asks for the conventional path without reading a page: the API's pages, bookmarks.
    response = client.get("/favicon.ico")
    assert (response.status_code, response["Location"]) == (302, "/static/site/favicon.svg")


def test_it_shows_its_own_404_page_for_an_unknown_conversation_under_debug(debug, client_alice) -> None:
    response = client_alice.get(f"/c/{uuid.uuid4()}/")
    assert response.status_code == 404
    assert [t.name for t in response.templates][:2] == ["404.html", "base.html"]
    page = response.content.decode()
    assert "<h1>Not found</h1>" in page and 'href="/">Back to your conversations</a>' in page
    assert "URLconf" not in page and "voicechat.urls" not in page  # Django's technical 404 lists both


def test_it_shows_the_same_404_page_for_another_users_conversation(debug, client_alice, other_user, agent) -> None:
    theirs = Conversation.objects.create(owner=other_user, agent=agent, title="Private")
    response = client_alice.get(f"/c/{theirs.id}/")
    assert response.status_code == 404
    assert "<h1>Not found</h1>" in response.content.decode()
    assert "Private" not in response.content.decode()


def test_it_still_opens_ones_own_conversation(debug, client_alice, conversation) -> None:
    response = client_alice.get(f"/c/{conversation.id}/")
    assert response.status_code == 200
    assert response.templates[0].name == "chat/index.html"


def test_it_marks_sign_up_errors_as_an_error_list_inside_the_card(client) -> None:
    form = {"username": "bob", "password1": "a-long-passphrase-1", "password2": "another-passphrase-2"}
    page = client.post("/accounts/signup/", form).content.decode()
    card = page[page.index('<section class="card">') : page.index("</section>")]
    assert re.search(r'<ul class="errorlist[^"]*"[^>]*><li>The two password fields didn.t match.</li></ul>', card)


def test_it_marks_a_failed_login_as_an_error_list_inside_the_card(client, user) -> None:
    page = client.post("/accounts/login/", {"username": "alice", "password": "wrong"}).content.decode()
    card = page[page.index('<section class="card">') : page.index("</section>")]
    assert '<ul class="errorlist nonfield">' in card


def test_it_styles_an_error_list_in_a_card_after_the_cards_own_lists() -> None:
    # `.card ul` greys every list in a card; the error rule must be at least as specific and later.
    css = (ROOT / "static" / "voicechat" / "site.css").read_text()
    grey = css.index(".card ul")
    red = re.search(r"\.card \.errorlist[^{]*\{[^}]*color: #b00020", css)
    assert red is not None and red.start() > grey


def make_dry_run(target: str, tmp_path: Path) -> str:
    """What `make TARGET` would run on a machine with no virtualenv yet."""
    done = subprocess.run(
        ["make", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_it_installs_only_the_runtime_requirements_for_make_run(tmp_path) -> None:
    commands = make_dry_run("run", tmp_path)
    assert "pip install --quiet -r requirements.txt\n" in commands
    assert "requirements-dev.txt" not in commands
    assert "python -m voicechat.serve --host 127.0.0.1 --port 8000\n" in commands  # Daphne unless ASGI_SERVER says


def test_it_installs_the_test_tools_too_for_make_test(tmp_path) -> None:
    for target in ("pytest", "lint", "typecheck"):
        assert "-r requirements.txt -r requirements-dev.txt" in make_dry_run(target, tmp_path), target
