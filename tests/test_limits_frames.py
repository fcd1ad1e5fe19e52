"""What one connection may send: message validity, frame size, and a token bucket on frame rate."""

from __future__ import annotations

import pytest

from chat.limits import CLOSE_FRAME_TOO_LARGE, CLOSE_TOO_MANY_FRAMES, FrameRate, Refusal, frame_check, message_check


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def refusal_of(rate: FrameRate) -> Refusal | None:
    try:
        rate.take()
    except Refusal as refusal:
        return refusal
    return None


def test_it_lets_a_burst_through_then_refuses_until_tokens_refill() -> None:
    clock = Clock()
    rate = FrameRate(2.0, 3, clock=clock)
    assert [refusal_of(rate) for _ in range(3)] == [None, None, None]
    refusal = refusal_of(rate)
    assert refusal is not None and refusal.code == "rate_limited" and refusal.close_code is None
    assert refusal.retry_after == 0.5 and "Wait 0.5 s" in refusal.message
    clock.now += 0.5
    assert refusal_of(rate) is None
    assert refusal_of(rate) is not None


def test_it_lets_a_voice_sdks_microphone_frames_through_at_a_quarter_of_the_cost(settings) -> None:
    clock = Clock()
    rate = FrameRate(settings.WS_FRAMES_PER_SECOND, settings.WS_FRAME_BURST, clock=clock)
    for _ in range(400):  # ten seconds of @elevenlabs/client voice mode: a chunk every 25 ms
        rate.take(0.25)
        clock.now += 0.025
    for _ in range(10):
        rate.take(1.0)  # and the user's own frames still fit beside them
    with pytest.raises(Refusal):
        for _ in range(1000):
            rate.take(0.25)  # a flood of them does not


def test_it_never_saves_up_more_than_a_burst() -> None:
    clock = Clock()
    rate = FrameRate(10.0, 2, clock=clock)
    clock.now += 3600
    assert [refusal_of(rate) is None for _ in range(3)] == [True, True, False]


def test_it_closes_a_client_that_keeps_sending_while_refused() -> None:
    clock = Clock()
    rate = FrameRate(1.0, 2, clock=clock)
    rate.take()
    rate.take()
    codes = [refusal_of(rate) for _ in range(3)]
    assert [r.close_code for r in codes if r] == [None, None, CLOSE_TOO_MANY_FRAMES]
    assert CLOSE_TOO_MANY_FRAMES == 4029


def test_it_forgives_a_client_that_slowed_down() -> None:
    clock = Clock()
    rate = FrameRate(1.0, 2, clock=clock)
    for _ in range(20):  # twice the rate, forever: half refused, never closed
        for _ in range(2):
            refusal = refusal_of(rate)
            assert refusal is None or refusal.close_code is None
        clock.now += 1.0


def test_it_reads_rate_and_burst_from_settings(settings) -> None:
    settings.WS_FRAMES_PER_SECOND, settings.WS_FRAME_BURST = 5.0, 7
    rate = FrameRate.from_settings()
    assert (rate.rate, rate.burst, rate.tokens) == (5.0, 7, 7.0)


def test_it_refuses_and_closes_on_a_frame_over_the_size_cap(settings) -> None:
    settings.WS_MAX_FRAME_BYTES = 1024
    frame_check(1024)
    with pytest.raises(Refusal) as caught:
        frame_check(1025)
    assert (caught.value.code, caught.value.close_code) == ("frame_too_large", CLOSE_FRAME_TOO_LARGE)
    assert "1,025 bytes" in caught.value.message and "1,024" in caught.value.message


def test_it_defaults_to_a_64_kib_frame_cap(settings) -> None:
    assert settings.WS_MAX_FRAME_BYTES == 65536


@pytest.mark.parametrize(
    ("text", "code"),
    [("", "invalid_message"), ("  ", "invalid_message"), (3, "invalid_message"), ("a\x00", "invalid_message")],
)
def test_it_refuses_an_invalid_message(text, code) -> None:
    with pytest.raises(Refusal) as caught:
        message_check(text)
    assert caught.value.code == code


def test_it_refuses_a_message_over_the_length_cap(settings) -> None:
    settings.MAX_MESSAGE_CHARS = 5
    assert message_check("hello") == "hello"
    assert message_check(" hi\n") == "hi"
    with pytest.raises(Refusal) as caught:
        message_check("hello!")
    assert caught.value.code == "message_too_long" and "this one has 6" in caught.value.message
