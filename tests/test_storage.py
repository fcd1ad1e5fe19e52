"""Reply audio in an S3-compatible bucket (AUDIO_STORAGE=s3): stored, served in byte ranges, deleted.

Against moto's S3 server in its own process on loopback: the real django-storages and boto3 code over
real HTTP, no stand-in for the storage class.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from botocore.config import Config
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from chat.models import Message
from tests import servers
from tests.conftest import wav_bytes
from tests.fakes.elevenlabs import FakeElevenLabs


@pytest.fixture(scope="module")
def s3() -> Iterator[servers.S3]:
    with servers.s3_server() as running:
        yield running


@pytest.fixture
def bucket(settings: Any, s3: servers.S3) -> servers.S3:
    """The project's default storage pointed at the bucket, with the options settings.py gives it."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": s3.bucket,
                "endpoint_url": s3.endpoint,
                "region_name": s3.region,
                "access_key": s3.access_key,
                "secret_key": s3.secret_key,
                "location": "voicechat",
                "addressing_style": "path",
                "default_acl": None,
                "file_overwrite": True,
                "client_config": Config(connect_timeout=5, read_timeout=5, retries={"max_attempts": 2}),
            },
        },
    }
    return s3


@pytest.fixture
def reply_in_bucket(conversation: Any, bucket: servers.S3) -> Message:
    reply = Message.objects.create(conversation=conversation, role="assistant", text="Hi.", status="complete")
    reply.audio.save(f"{reply.id}.wav", ContentFile(wav_bytes()))
    return reply


def settings_output(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    variables = ("AUDIO_STORAGE", "S3_BUCKET", "S3_ENDPOINT_URL", "S3_REGION", "S3_PREFIX", "S3_ADDRESSING_STYLE")
    clean = {k: v for k, v in os.environ.items() if k not in variables}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings as s; " + code],
        cwd=servers.ROOT,
        env={**clean, "DEBUG": "true", "DJANGO_SETTINGS_MODULE": "voicechat.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_keeps_audio_in_the_local_folder_by_default() -> None:
    done = settings_output("print(s.STORAGES['default']['BACKEND'])")
    assert done.stdout.strip() == "django.core.files.storage.FileSystemStorage", done.stderr


def test_it_maps_the_s3_variables_to_the_storage() -> None:
    code = (
        "o = s.STORAGES['default']['OPTIONS']; print(s.STORAGES['default']['BACKEND']); "
        "print(o['bucket_name'], o['endpoint_url'], o['region_name'], o['location'], o['addressing_style'], "
        "o['default_acl'], o['client_config'].connect_timeout, o['client_config'].retries)"
    )
    done = settings_output(
        code,
        AUDIO_STORAGE="s3",
        S3_BUCKET="replies",
        S3_ENDPOINT_URL="https://s3.example.net",
        S3_REGION="eu-west-3",
        S3_PREFIX="/voicechat/",
        S3_ADDRESSING_STYLE="path",
        S3_TIMEOUT="4",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "storages.backends.s3.S3Storage",
        "replies https://s3.example.net eu-west-3 voicechat path None 4.0 {'max_attempts': 3, 'mode': 'standard'}",
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUDIO_STORAGE": "s3"}, "AUDIO_STORAGE=s3 needs S3_BUCKET"),
        ({"AUDIO_STORAGE": "gcs"}, "AUDIO_STORAGE='gcs' is unknown"),
        ({"AUDIO_STORAGE": "s3", "S3_BUCKET": "b", "S3_ENDPOINT_URL": "s3.example.net"}, "S3_ENDPOINT_URL"),
        ({"AUDIO_STORAGE": "s3", "S3_BUCKET": "b", "S3_ADDRESSING_STYLE": "dns"}, "S3_ADDRESSING_STYLE"),
    ],
)
def test_it_names_a_wrong_storage_variable(env: dict[str, str], message: str) -> None:
    done = settings_output("print(1)", **env)
    assert done.returncode != 0
    assert message in done.stderr


def test_it_stores_reply_audio_in_the_bucket(reply_in_bucket: Message, bucket: servers.S3) -> None:
    key = f"voicechat/audio/{reply_in_bucket.conversation_id}/{reply_in_bucket.id}.wav"
    assert bucket.object_keys() == [key]
    assert bucket.client().get_object(Bucket=bucket.bucket, Key=key)["Body"].read() == wav_bytes()


def test_it_serves_byte_ranges_from_the_bucket(client_alice: Any, reply_in_bucket: Message) -> None:
    url = f"/api/messages/{reply_in_bucket.id}/audio/"
    whole = wav_bytes()
    response = client_alice.get(url)
    assert response.status_code == 200 and response.content == whole
    assert response["Accept-Ranges"] == "bytes"
    response = client_alice.get(url, HTTP_RANGE="bytes=100-199")
    assert response.status_code == 206 and response.content == whole[100:200]
    assert response["Content-Range"] == f"bytes 100-199/{len(whole)}"
    response = client_alice.get(url, HTTP_RANGE="bytes=-10")
    assert response.status_code == 206 and response.content == whole[-10:]
    response = client_alice.get(url, HTTP_RANGE=f"bytes={len(whole)}-")
    assert response.status_code == 416 and response["Content-Range"] == f"bytes */{len(whole)}"


def test_it_reads_only_the_range_from_the_bucket(client_alice: Any, reply_in_bucket: Message) -> None:
    """The bucket is asked for the range, not the object: what a seek in a long reply costs."""
    gets: list[tuple[str | None, int]] = []

    def record(params: Any, **kwargs: Any) -> None:
        gets.append((params.get("Range"), 0))

    def received(http_response: Any, parsed: Any, **kwargs: Any) -> None:
        gets[-1] = (gets[-1][0], int(parsed["ContentLength"]))

    events = default_storage.connection.meta.client.meta.events  # type: ignore[attr-defined]
    events.register("provide-client-params.s3.GetObject", record)
    events.register("after-call.s3.GetObject", received)
    try:
        response = client_alice.get(f"/api/messages/{reply_in_bucket.id}/audio/", HTTP_RANGE="bytes=1000-1099")
    finally:
        events.unregister("provide-client-params.s3.GetObject", record)
        events.unregister("after-call.s3.GetObject", received)
    assert response.status_code == 206 and len(response.content) == 100
    assert gets == [("bytes=1000-1099", 100)]


def test_it_answers_404_when_the_object_is_gone(
    client_alice: Any, reply_in_bucket: Message, bucket: servers.S3
) -> None:
    for key in bucket.object_keys():
        bucket.client().delete_object(Bucket=bucket.bucket, Key=key)
    assert client_alice.get(f"/api/messages/{reply_in_bucket.id}/audio/").status_code == 404


def test_it_deletes_the_objects_with_the_conversation(
    client_alice: Any, reply_in_bucket: Message, bucket: servers.S3, django_capture_on_commit_callbacks: Any
) -> None:
    other = Message.objects.create(conversation=reply_in_bucket.conversation, role="assistant", text="Bye.")
    other.audio.save(f"{other.id}.wav", ContentFile(wav_bytes(100)))
    assert len(bucket.object_keys()) == 2
    with django_capture_on_commit_callbacks(execute=True):
        response = client_alice.delete(f"/api/conversations/{reply_in_bucket.conversation_id}/")
    assert response.status_code == 204
    assert bucket.object_keys() == []


@pytest.mark.daphne
async def test_it_serves_a_real_turns_audio_from_the_bucket(s3: servers.S3, tmp_path: Path) -> None:
    """A Daphne process configured only through the environment stores a spoken reply in the bucket."""
    fake = FakeElevenLabs.start_in_thread()
    overrides = {"TTS_BACKEND": "elevenlabs", "ELEVENLABS_API_KEY": fake.api_key, "ELEVENLABS_BASE_URL": fake.url}
    try:
        with servers.daphne_app(tmp_path, DEMO_LLM_TOKENS_PER_SECOND="400", **s3.env, **overrides) as app:
            cookie = app.session_cookie("stella")
            async with aiohttp.ClientSession() as http, servers.open_socket(http, app.url, cookie) as sock:
                frames = await sock.turn("Say something worth keeping.")
                complete = frames[-1]["agent_response_complete_event"]
                assert complete["status"] == "complete" and complete["audio_url"]
                async with http.get(app.url + complete["audio_url"], headers={"Cookie": cookie}) as response:
                    assert response.status == 200
                    audio = await response.read()
        assert audio[:4] == b"RIFF"
        assert audio[44:] == b"".join(fake.sent_pcm())
        assert not (tmp_path / "media").exists()  # nothing went to the local folder
        key = next(k for k in s3.object_keys() if k.endswith(f"/{complete['message_id']}.wav"))
        assert s3.client().head_object(Bucket=s3.bucket, Key=key)["ContentLength"] == len(audio)
    finally:
        fake.stop()
