"""Log in, log out, change password (Django's views); sign up and API keys (ours)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from chat import views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("signup/", views.signup, name="signup"),
    path("api-keys/", views.api_keys, name="api_keys"),
]
