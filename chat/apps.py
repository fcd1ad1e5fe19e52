from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Voice chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat import groups  # noqa: F401  (connects the session-ending signal receivers)
