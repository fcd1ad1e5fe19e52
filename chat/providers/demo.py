"""An offline, deterministic LLM that streams a markdown-rich reply, so every part of the voice path runs
without a key and the speech filter is always exercised."""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import AsyncGenerator, Sequence

from chat.providers.base import ChatMessage, LLMProvider

_TEMPLATES = (
    "## About {topic}\n\nThanks for asking about **{topic}**. I am the demo agent, so this reply is written "
    "offline, but it streams exactly like a real model would. First, your words reach the server over a "
    "WebSocket. Then each finished sentence goes to the speech engine, while the rest is still being "
    "written.\n\n- Speech starts on the first sentence.\n- Markdown like this list is never read aloud.\n\n"
    "You can read more in [the project notes](https://example.com/voicechat/notes).\n\n"
    "```python\nprint('code blocks stay on screen')\n```\n\nThat is all for now. Ask me anything else!",
    "# A quick answer\n\nYou said: *{topic}*. Here is how I would think about it, in three short steps.\n\n"
    "1. Write down what you want to achieve.\n2. Try the smallest version that could work.\n"
    "3. **Measure it**, then improve the slowest part.\n\nThe details are on "
    "[this page](https://example.com/steps), and the code below is only shown, not spoken.\n\n"
    "```\nmake bench\n```\n\nMost people find the second step the hardest. Good luck, and tell me how it goes.",
    "### Here is what I know\n\nGood question about **{topic}**! Voice replies feel natural when the first "
    "sound arrives quickly, usually within half a second. After that, the audio must flow without gaps. "
    "This demo keeps both promises.\n\n- The server speaks one sentence while it writes the next.\n"
    "- Stop works at once, and replay uses the stored audio.\n\nSee [the README](https://example.com/readme) "
    "for the numbers.\n\n~~~bash\ncurl https://example.com\n~~~\n\nIs there anything else you would like to hear?",
)
_TOKEN = re.compile(r"\S+\s*|\s+")


class DemoLLM(LLMProvider):
    """Streams a canned reply chosen by a stable hash of the last user message, token by token."""

    def __init__(self, *, tokens_per_second: float = 30.0) -> None:
        self.delay = 1.0 / tokens_per_second if tokens_per_second > 0 else 0.0

    @staticmethod
    def reply_for(text: str) -> str:
        """The full reply the demo gives to a user message (tests and the benchmark compare against it)."""
        topic = " ".join(text.split()[:6]).strip(" .!?") or "that"
        template = _TEMPLATES[zlib.crc32(text.encode()) % len(_TEMPLATES)]
        return template.format(topic=topic)

    @staticmethod
    def tokens(reply: str) -> list[str]:
        """Word-ish tokens with their trailing space; fences and emphasis split like a real tokenizer's."""
        pieces: list[str] = []
        for token in _TOKEN.findall(reply):
            if token.startswith(("```", "**")) and len(token) > 2:
                pieces.extend((token[:2], token[2:]))
            else:
                pieces.append(token)
        return pieces

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncGenerator[str, None]:
        last = next((m.content for m in reversed(messages) if m.role == "user"), "")
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index, token in enumerate(self.tokens(self.reply_for(last))):
            if self.delay:
                # Sleep to an absolute deadline so timer slack does not add up over a reply.
                await asyncio.sleep(max(0.0, started + (index + 1) * self.delay - loop.time()))
            yield token
