"""A reply's text deltas, paced: the first at once, the rest joined at most every interval, none lost."""

from __future__ import annotations

import asyncio

import pytest

from chat.turns.text_frames import TextFrames


class Sent:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.changed = asyncio.Event()

    async def __call__(self, text: str) -> None:
        self.texts.append(text)
        self.changed.set()

    async def next(self, timeout: float = 2.0) -> str:
        count = len(self.texts)
        async with asyncio.timeout(timeout):
            while len(self.texts) == count:
                self.changed.clear()
                await self.changed.wait()
        return self.texts[-1]


async def test_it_sends_the_first_text_before_add_returns() -> None:
    sent = Sent()
    frames = TextFrames(sent, interval=10.0)
    await frames.add("Hello")
    assert sent.texts == ["Hello"]
    await frames.close()


async def test_it_joins_what_arrives_within_the_interval_into_one_frame() -> None:
    sent = Sent()
    frames = TextFrames(sent, interval=0.2)
    for token in ["The", " quick", " brown", " fox"]:
        await frames.add(token)
    assert sent.texts == ["The"]  # the rest waits for the interval
    assert await sent.next() == " quick brown fox"
    await frames.close()
    assert sent.texts == ["The", " quick brown fox"]


async def test_it_sends_a_late_token_without_waiting_for_another() -> None:
    """A model that pauses mid-reply: the token before the pause is shown, not held until the next one."""
    sent = Sent()
    frames = TextFrames(sent, interval=0.02)
    await frames.add("Let me think")
    await asyncio.sleep(0.1)  # the writer is now waiting for text, not sleeping
    await frames.add(" about it.")
    assert await sent.next(timeout=0.5) == " about it."
    await frames.close()


async def test_close_sends_the_rest_after_the_earlier_frames_and_only_once() -> None:
    sent = Sent()
    frames = TextFrames(sent, interval=10.0)
    await frames.add("One")
    await frames.add(" two")
    await frames.add(" three")
    await frames.close()
    await frames.close()
    assert sent.texts == ["One", " two three"]
    with pytest.raises(RuntimeError):
        await frames.add(" four")


async def test_close_of_a_reply_without_text_sends_nothing() -> None:
    sent = Sent()
    await TextFrames(sent).close()
    assert sent.texts == []


async def test_discard_stops_the_writer_and_sends_nothing_more() -> None:
    sent = Sent()
    frames = TextFrames(sent, interval=0.01)
    await frames.add("Hi")
    await frames.add(" there")
    frames.discard()
    await asyncio.sleep(0.05)
    assert sent.texts == ["Hi"]
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "text-frames"]
