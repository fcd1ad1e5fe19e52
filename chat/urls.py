"""Page routes of the chat app."""

from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from chat import views

app_name = "chat"

urlpatterns = [
    path("", views.index, name="index"),
    path("c/<uuid:conversation_id>/", views.index, name="conversation"),
    # For what asks the conventional path without reading the page's <link rel="icon">: the API's
    # browsable pages, feed readers, bookmarks. Not permanent, so the icon may move.
    path("favicon.ico", RedirectView.as_view(url=static("site/favicon.svg")), name="favicon"),
]
