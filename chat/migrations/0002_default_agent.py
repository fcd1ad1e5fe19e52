"""Create the default agent so a fresh install can talk at once."""

from django.db import migrations

SYSTEM_PROMPT = (
    "You are a friendly, concise voice assistant. Your replies are read aloud, so answer in short "
    "spoken sentences, avoid tables and long lists, and spell out symbols when they matter."
)


def create_default_agent(apps, schema_editor):
    Agent = apps.get_model("chat", "Agent")
    if not Agent.objects.exists():
        Agent.objects.create(name="Assistant", system_prompt=SYSTEM_PROMPT, is_default=True, language_code="en")


def remove_default_agent(apps, schema_editor):
    Agent = apps.get_model("chat", "Agent")
    Agent.objects.filter(name="Assistant", is_default=True, conversations__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("chat", "0001_initial")]
    operations = [migrations.RunPython(create_default_agent, remove_default_agent)]
