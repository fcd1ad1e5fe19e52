"""Real server processes for end-to-end tests: the app under Daphne on a temp database, TTS via the fake."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@dataclass
class App:
    url: str
    env: dict[str, str]

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout

    def session_cookie(self, username: str, password: str = "a-long-passphrase-1") -> str:
        """Create a user in the app's database and return a logged-in session cookie for it."""
        return self.session_cookies([username], password)[0]

    def session_cookies(self, usernames: list[str], password: str = "a-long-passphrase-1") -> list[str]:
        script = (
            "from django.contrib.auth import get_user_model; from tests.wsclient import session_cookie_for\n"
            f"for name in {usernames!r}:\n"
            f"    print(session_cookie_for(get_user_model().objects.create_user(name, password={password!r})))"
        )
        return self.manage("shell", "-c", script).strip().splitlines()[-len(usernames) :]


@contextmanager
def daphne_app(tmp_path: Path, **overrides: str) -> Iterator[App]:
    """Daphne serving the app on a temp SQLite file (migrated), stopped on exit."""
    port = free_port()
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "REDIS_URL": "",
        "LLM_BACKEND": "demo",
        "DEMO_LLM_TOKENS_PER_SECOND": "100",
        **overrides,
    }
    app = App(url=f"http://127.0.0.1:{port}", env=env)
    app.manage("migrate", "--noinput", "-v0")
    daphne = str(Path(sys.executable).parent / "daphne")
    server = subprocess.Popen(
        [daphne, "-b", "127.0.0.1", "-p", str(port), "voicechat.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield app
    finally:
        server.terminate()
        server.wait(timeout=10)
