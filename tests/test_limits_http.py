"""Abuse limits on the HTTP side: REST throttles, the sign-up throttle, the log-in lockout, the client's address."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.test import RequestFactory

from chat.throttles import client_ip
from tests.conftest import LIMITS_REDIS_URL, PASSWORD
from tests.test_settings import python, settings_values

pytestmark = pytest.mark.django_db

User = get_user_model()
NEW_PASSWORD = "An0ther-passphrase"


@pytest.fixture
def rates(settings):
    """Small rates, so a test can walk past them."""

    def set_rates(**rates: str) -> None:
        config = {**settings.REST_FRAMEWORK}
        config["DEFAULT_THROTTLE_RATES"] = {**config["DEFAULT_THROTTLE_RATES"], **rates}
        settings.REST_FRAMEWORK = config

    return set_rates


def assert_throttled(response) -> None:
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    body = response.json()
    assert body["code"] == "rate_limited"
    assert body["detail"] == f"Too many requests; try again in {response['Retry-After']} s."


# --- REST API -----------------------------------------------------------------------------------


def test_it_throttles_each_users_api_requests_with_retry_after(client_alice, client, other_user, rates) -> None:
    rates(user="3/min")
    for _ in range(3):
        assert client_alice.get("/api/conversations/").status_code == 200
    assert_throttled(client_alice.get("/api/agents/"))  # one allowance for the whole API
    other = type(client)()
    other.force_login(other_user)
    assert other.get("/api/conversations/").status_code == 200  # another user is not affected


def test_it_throttles_writes_apart_from_reads(client_alice, agent, rates) -> None:
    rates(write="2/min")
    for _ in range(2):
        assert client_alice.post("/api/conversations/", {}, content_type="application/json").status_code == 201
    assert_throttled(client_alice.post("/api/conversations/", {}, content_type="application/json"))
    assert client_alice.get("/api/conversations/").status_code == 200


def test_it_defaults_to_rates_that_a_person_never_meets(settings) -> None:
    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] == {
        "user": "300/min",
        "write": "30/min",
        "signup": "10/hour",
    }


def test_it_counts_throttles_in_redis_when_there_is_one(client_alice, rates, settings) -> None:
    import redis

    try:
        redis.Redis.from_url(LIMITS_REDIS_URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {LIMITS_REDIS_URL}")
    prefix = f"test-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": LIMITS_REDIS_URL,
            "KEY_PREFIX": prefix,
        }
    }
    rates(user="2/min")
    try:
        assert client_alice.get("/api/agents/").status_code == 200
        assert client_alice.get("/api/agents/").status_code == 200
        assert_throttled(client_alice.get("/api/agents/"))
        shared = redis.Redis.from_url(LIMITS_REDIS_URL)
        assert list(shared.scan_iter(f"{prefix}:*throttle_user_*"))  # what every other process reads
    finally:
        caches["default"].delete_many(
            [f"throttle_user_{user_id}" for user_id in User.objects.values_list("pk", flat=True)]
        )


# --- sign-up --------------------------------------------------------------------------------------


def signup(client, name: str, remote_addr: str = "203.0.113.5", **extra):
    form = {"username": name, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    return client.post("/accounts/signup/", form, REMOTE_ADDR=remote_addr, **extra)


def test_it_limits_accounts_created_from_one_address(client, agent, rates) -> None:
    rates(signup="2/hour")
    for name in ("first", "second"):
        assert signup(client, name).status_code == 302
        client.logout()
    response = signup(client, "third")
    assert response.status_code == 429
    assert 3000 < int(response["Retry-After"]) <= 3600
    page = response.content.decode()
    assert "Too many accounts were created from your network recently" in page
    assert 'value="third"' in page  # what was typed is kept
    assert not User.objects.filter(username="third").exists()
    assert signup(client, "elsewhere", remote_addr="198.51.100.7").status_code == 302


def test_it_does_not_count_signups_that_failed_validation(client, agent, rates) -> None:
    rates(signup="1/hour")
    bad = {"username": "x", "password1": NEW_PASSWORD, "password2": "different"}
    for _ in range(3):
        assert client.post("/accounts/signup/", bad, REMOTE_ADDR="203.0.113.5").status_code == 200
    assert signup(client, "finally").status_code == 302


def test_it_keeps_the_signup_switch_first(client, settings, rates) -> None:
    settings.ALLOW_SIGNUP = False
    assert signup(client, "nobody").status_code == 404


def test_it_takes_the_address_from_the_trusted_proxy(client, agent, rates, settings) -> None:
    rates(signup="1/hour")
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.2"
    assert signup(client, "one", proxy, HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.5").status_code == 302
    client.logout()
    # The same client lying about its address on the left of the header is still 203.0.113.5.
    assert signup(client, "two", proxy, HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.5").status_code == 429
    assert signup(client, "three", proxy, HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 302


@pytest.mark.parametrize(
    ("count", "forwarded", "expected"),
    [
        (0, "1.1.1.1", "10.0.0.2"),
        (1, "", "10.0.0.2"),
        (1, "1.1.1.1, 203.0.113.5", "203.0.113.5"),
        (2, "1.1.1.1, 203.0.113.5, 10.0.0.9", "203.0.113.5"),
        (3, "203.0.113.5", "203.0.113.5"),
    ],
)
def test_it_finds_the_clients_address(settings, count, forwarded, expected) -> None:
    settings.TRUSTED_PROXY_COUNT = count
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", **headers)
    assert client_ip(request) == expected


# --- log-in lockout -------------------------------------------------------------------------------


def log_in(client, password: str, remote_addr: str = "203.0.113.5", username: str = "alice"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=remote_addr)


def test_it_locks_out_a_user_name_after_repeated_wrong_passwords_from_one_address(client, user, settings) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(2):
        assert log_in(client, "wrong").status_code == 200
    locked = log_in(client, "wrong")
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) == 15 * 60
    page = locked.content.decode()
    assert "Too many wrong passwords for this account from your network" in page and "15 min" in page
    assert 'value="alice"' in page
    assert log_in(client, PASSWORD).status_code == 429  # even the right password, until the cool-off ends
    assert client.get("/").status_code == 302
    assert log_in(client, PASSWORD, remote_addr="198.51.100.7").status_code == 302  # the owner elsewhere still can


def test_it_resets_the_count_on_a_successful_log_in(client, user, settings) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    log_in(client, "wrong"), log_in(client, "wrong")
    assert log_in(client, PASSWORD).status_code == 302
    client.logout()
    log_in(client, "wrong"), log_in(client, "wrong")
    assert log_in(client, PASSWORD).status_code == 302


def test_it_logs_in_freely_with_the_lockout_switched_off(client, user, settings) -> None:
    settings.AXES_ENABLED = False
    settings.AXES_FAILURE_LIMIT = 1
    for _ in range(3):
        assert log_in(client, "wrong").status_code == 200
    assert log_in(client, PASSWORD).status_code == 302


def test_it_defaults_to_five_tries_and_fifteen_minutes(settings) -> None:
    assert (settings.AXES_ENABLED, settings.AXES_FAILURE_LIMIT) == (True, 5)
    assert settings.AXES_COOLOFF_TIME.total_seconds() == 900
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


# --- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("API_THROTTLE_RATE", "lots"),
        ("API_WRITE_THROTTLE_RATE", "30/fortnight"),
        ("SIGNUP_THROTTLE_RATE", "ten/hour"),
        ("SPEECH_DAILY_CHARS", "-5"),
        ("MAX_SOCKETS_PER_USER", "0"),
        ("WS_FRAMES_PER_SECOND", "fast"),
        ("LOGIN_LOCKOUT", "perhaps"),
    ],
)
def test_it_refuses_to_start_with_a_wrong_limit(variable, value) -> None:
    done = python("-c", "import django; django.setup()", DEBUG="true", **{variable: value})
    assert done.returncode != 0
    assert variable in done.stderr.strip().splitlines()[-1]


def test_it_reads_every_limit_from_the_environment() -> None:
    env = {
        "SPEECH_DAILY_CHARS": "11",
        "SPEECH_MONTHLY_CHARS": "22",
        "SPEECH_SITE_DAILY_CHARS": "33",
        "MAX_SOCKETS_PER_USER": "3",
        "API_THROTTLE_RATE": "7/s",
        "LOGIN_FAILURE_LIMIT": "9",
        "LOGIN_LOCKOUT_MINUTES": "2",
        "TRUSTED_PROXY_COUNT": "2",
    }
    names = (
        "s.SPEECH_DAILY_CHARS, s.SPEECH_MONTHLY_CHARS, s.SPEECH_SITE_DAILY_CHARS, s.MAX_SOCKETS_PER_USER, "
        "s.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']['user'], s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.seconds, "
        "s.TRUSTED_PROXY_COUNT"
    )
    assert settings_values(names, DEBUG="true", **env) == ["11 22 33 3 7/s 9 120 2"]


def test_it_trusts_no_forwarded_address_when_daphne_faces_clients() -> None:
    assert settings_values("s.TRUSTED_PROXY_COUNT", DEBUG="true") == ["0"]
    assert settings_values("s.TRUSTED_PROXY_COUNT", DEBUG="true", USE_X_FORWARDED_PROTO="true") == ["1"]
