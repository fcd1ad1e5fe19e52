"""ASGI entry point: HTTP through Django, WebSockets through the chat consumer."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voicechat.settings")
# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat.routing import websocket_urlpatterns  # noqa: E402
from chat.signing import OriginCheckUnlessSigned  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Cookie + allowed Origin, or a signed URL token instead of both (chat/signing.py).
        "websocket": OriginCheckUnlessSigned(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Every server process closes replies a crashed process left `streaming`, from its start (chat/turns/store.py).
from django.conf import settings  # noqa: E402

from chat.turns.store import sweeper_start  # noqa: E402
from chat.turns.turn import HEARTBEAT_SECONDS  # noqa: E402

sweeper_start(interval=settings.TURN_SWEEP_SECONDS, stale_after=3 * HEARTBEAT_SECONDS)
