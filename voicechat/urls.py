"""Top-level URLs: admin, accounts, the REST API with its schema, the ElevenLabs-shaped API, the chat page."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("chat.account_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/", include("chat.api_urls")),
    path("v1/convai/", include("chat.convai_urls")),
    path("", include("chat.urls")),
]
