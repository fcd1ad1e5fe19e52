"""Real-looking LLM replies and the speech chunks each one must give, table-driven for tests/test_speech.py.

Each expected list is what a listener hears, chunk by chunk, with the default `SpeechChunker()` settings.
The decisions pinned here: links keep their text, images are dropped whole (alt text included); inline
code is read when short (≤ 40 characters) and dropped when longer; every list item, heading and table row
becomes its own sentence (a period is added when it has no terminal punctuation, 。 after CJK text); tables
are read row by row, cells joined by commas, the |---| line skipped; HTML entities are decoded (&amp; → &);
a standalone < or > is read as "less than" / "greater than"; bare URLs are dropped, or said as "the link"
where the sentence needs them ("lives at …"), e-mail addresses are kept; LaTeX math is read the way a
person says it, or named "(formula shown on screen)" when it is not worth reading; $5 is a price, not
math; footnote definitions are read as items, link definitions ([1]: https://…) are not; a run without
punctuation is cut near 160 characters (CJK characters count twice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from chat.speech import SpeechChunk, SpeechChunker

TOKENS_PER_SECOND = 30  # the pace of the simulated LLM
_LLM_TOKEN = re.compile(
    r" ?[^\W\d_]+(?<![\u3040-\u9fff])"  # a word with the space before it
    r"| ?\d{1,3}"  # numbers in threes
    r"|[\u3040-\u30ff\u3400-\u9fff]{1,2}"  # CJK: one or two characters
    r"|\n+| +|[^\w\s]{1,2}| ?.",  # newlines, spaces, markup and punctuation in ones and twos
    re.DOTALL,
)


def llm_tokens(text: str) -> list[str]:
    """Roughly how an LLM streams a reply: words with their leading space, CJK in ones and twos."""
    tokens = _LLM_TOKEN.findall(text)
    assert "".join(tokens) == text
    return tokens


@dataclass(frozen=True)
class Release:
    token: int  # index of the token whose arrival released the chunk; len(tokens) = the end of the reply
    chunk: SpeechChunk

    @property
    def ms(self) -> float:
        """When, on the simulated clock: token i arrives at (i + 1) / TOKENS_PER_SECOND."""
        return (self.token + 1) * 1000 / TOKENS_PER_SECOND


def releases(tokens: list[str], **options: Any) -> list[Release]:
    """Feed the tokens one by one; note which token released each chunk (the end: the flush)."""
    chunker = SpeechChunker(**options)
    out = [Release(i, chunk) for i, token in enumerate(tokens) for chunk in chunker.feed(token)]
    return out + [Release(len(tokens), chunk) for chunk in chunker.flush()]


def token_at(tokens: list[str], char: int) -> int:
    """The index of the token that holds character `char` of the reply."""
    end = 0
    for i, token in enumerate(tokens):
        end += len(token)
        if char < end:
            return i
    raise IndexError(char)


@dataclass(frozen=True)
class Case:
    name: str
    reply: str
    chunks: list[str]


FOX = "the quick brown fox jumps over the lazy dog"

CORPUS: list[Case] = [
    Case(
        "plain_sentences",
        (
            "Sure! The capital of France is Paris. It has been the capital for centuries, and it "
            "is also the largest city in the country. Would you like to know more?"
        ),
        [
            "Sure!",
            (
                "The capital of France is Paris. It has been the capital for centuries, and it is also "
                "the largest city in the country."
            ),
            "Would you like to know more?",
        ],
    ),
    Case(
        "first_clause",
        (
            "When you stream speech from a language model, the first sound should arrive quickly, "
            "which is why the first chunk may be a clause rather than a whole sentence. After "
            "that, chunks are sentences."
        ),
        [
            "When you stream speech from a language model,",
            (
                "the first sound should arrive quickly, which is why the first chunk may be a clause "
                "rather than a whole sentence."
            ),
            "After that, chunks are sentences.",
        ],
    ),
    Case(
        "money_numbers",
        (
            "The Pro plan costs $29.99 per month, or $299.50 per year. That saves about 16.7% "
            "compared to paying monthly. Pi is roughly 3.14 and e is 2.718. The total came to "
            "1,000.50 euros last quarter, up 10.5% from before."
        ),
        [
            "The Pro plan costs $29.99 per month, or $299.50 per year.",
            "That saves about 16.7% compared to paying monthly.",
            ("Pi is roughly 3.14 and e is 2.718. The total came to 1,000.50 euros last quarter, up 10.5% from before."),
        ],
    ),
    Case(
        "abbreviations",
        (
            "Mr. Smith and Dr. Jones met at St. Mary's hospital on Baker St. last week. They "
            "compared tools, e.g. Python vs. Rust, i.e. the usual debate. The U.S. team joined "
            "later. They talked about apples, pears, etc. and then went home. Prof. Lee arrived at "
            "5 p.m. sharp."
        ),
        [
            "Mr. Smith and Dr. Jones met at St. Mary's hospital on Baker St. last week.",
            "They compared tools, e.g. Python vs. Rust, i.e. the usual debate.",
            "The U.S. team joined later. They talked about apples, pears, etc. and then went home.",
            "Prof. Lee arrived at 5 p.m. sharp.",
        ],
    ),
    Case(
        "ellipses",
        (
            "Well... let me think about that. Hmm… it depends on the context. The answer is... "
            "probably yes. Wait... No, actually it is no."
        ),
        [
            "Well... let me think about that.",
            "Hmm… it depends on the context. The answer is... probably yes.",
            "Wait... No, actually it is no.",
        ],
    ),
    Case(
        "heading_and_list",
        (
            "## Getting started\n"
            "\n"
            "To set up the project, follow these steps:\n"
            "\n"
            "1. Install Python 3.11 or newer\n"
            "2. Create a virtual environment\n"
            "3. Run `make test` to check everything works\n"
            "\n"
            "That's it! You are ready to go."
        ),
        [
            "Getting started.",
            "To set up the project, follow these steps: Install Python 3.11 or newer.",
            "Create a virtual environment. Run make test to check everything works.",
            "That's it! You are ready to go.",
        ],
    ),
    Case(
        "nested_list",
        (
            "Here is an overview of the options:\n"
            "\n"
            "- **Frontend**\n"
            "  - React with TypeScript\n"
            "  - Vite for bundling\n"
            "- **Backend**\n"
            "  - Django 5.2\n"
            "    - Channels for WebSockets\n"
            "  - PostgreSQL in production\n"
            "\n"
            "Each part can be swapped later."
        ),
        [
            "Here is an overview of the options:",
            "Frontend. React with TypeScript. Vite for bundling.",
            "Backend. Django 5.2. Channels for WebSockets. PostgreSQL in production.",
            "Each part can be swapped later.",
        ],
    ),
    Case(
        "bullets_star_plus",
        (
            "Key points:\n"
            "* Speed matters\n"
            "* So does accuracy.\n"
            "+ Plus sign bullets work too!\n"
            "\n"
            "Let me know if anything is unclear."
        ),
        [
            "Key points:",
            "Speed matters. So does accuracy. Plus sign bullets work too!",
            "Let me know if anything is unclear.",
        ],
    ),
    Case(
        "fenced_python",
        (
            "Here is a function that adds two numbers:\n"
            "\n"
            "```python\n"
            "def add(a: int, b: int) -> int:\n"
            "    # Returns the sum. Simple!\n"
            "    return a + b\n"
            "```\n"
            "\n"
            "Call it with two integers and it returns their sum."
        ),
        [
            "Here is a function that adds two numbers:",
            "Call it with two integers and it returns their sum.",
        ],
    ),
    Case(
        "fenced_tilde",
        (
            "You can install it with pip.\n"
            "\n"
            "~~~bash\n"
            "pip install requests\n"
            "~~~\n"
            "\n"
            "Then import it in your script and you are done."
        ),
        [
            "You can install it with pip.",
            "Then import it in your script and you are done.",
        ],
    ),
    Case(
        "indented_code",
        (
            "The classic first program looks like this.\n"
            "\n"
            '    print("Hello, world!")\n'
            '    print("Goodbye.")\n'
            "\n"
            "It prints two lines to the console."
        ),
        [
            "The classic first program looks like this.",
            "It prints two lines to the console.",
        ],
    ),
    Case(
        "unclosed_fence",
        (
            "Sure, here is the script you asked for, written in Bash.\n"
            "\n"
            "```bash\n"
            "#!/bin/bash\n"
            'echo "Hello"\n'
            "for i in 1 2 3; do echo $i; done"
        ),
        [
            "Sure, here is the script you asked for, written in Bash.",
        ],
    ),
    Case(
        "only_code",
        ("```js\nconsole.log('hi');\n```"),
        [],
    ),
    Case(
        "code_in_list",
        (
            "To deploy:\n"
            "\n"
            "1. Build the image:\n"
            "\n"
            "   ```bash\n"
            "   docker build -t app .\n"
            "   ```\n"
            "\n"
            "2. Push it to the registry.\n"
            "3. Restart the service.\n"
            "\n"
            "Deployment usually takes two minutes."
        ),
        [
            "To deploy:",
            "Build the image: Push it to the registry. Restart the service.",
            "Deployment usually takes two minutes.",
        ],
    ),
    Case(
        "inline_code",
        (
            "Use the `requests` library and call `requests.get(url, timeout=10)` to fetch a page. "
            "For long commands like `pip install -r requirements-dev.txt --upgrade --no-cache-dir` "
            "see the docs. The `snake_case` name is conventional."
        ),
        [
            "Use the requests library and call requests.get(url, timeout=10) to fetch a page.",
            "For long commands like see the docs. The snake case name is conventional.",
        ],
    ),
    Case(
        "table",
        (
            "Here is a comparison of the plans:\n"
            "\n"
            "| Plan | Price | Users |\n"
            "|------|------:|:-----:|\n"
            "| Free | $0 | 1 |\n"
            "| Pro | $29.99 | 5 |\n"
            "| Team | $99 | 20 |\n"
            "\n"
            "Most people start with the Pro plan."
        ),
        [
            "Here is a comparison of the plans:",
            "Plan, Price, Users. Free, $0, 1. Pro, $29.99, 5. Team, $99, 20.",
            "Most people start with the Pro plan.",
        ],
    ),
    Case(
        "bold_italic",
        (
            "This is **very important**: always *back up* your data. ***Never*** skip it, and "
            "~~ignore~~ remember __this__ rule. Some _italic text_ too."
        ),
        [
            "This is very important: always back up your data.",
            "Never skip it, and ignore remember this rule. Some italic text too.",
        ],
    ),
    Case(
        "links",
        (
            "You can read the [official documentation](https://docs.djangoproject.com/en/5.2/) for "
            'details, or see [this guide](https://example.com/guide "Guide") instead. The '
            "[Channels docs](https://channels.readthedocs.io) cover WebSockets."
        ),
        [
            "You can read the official documentation for details,",
            "or see this guide instead. The Channels docs cover WebSockets.",
        ],
    ),
    Case(
        "bare_urls",
        (
            "Visit https://www.example.com/path?query=1 for more information. You can also try "
            "www.example.org. Or email support@example.com if you are stuck. See also "
            "(https://example.net/page)."
        ),
        [
            "Visit the link for more information.",
            "You can also try the link. Or email support@example.com if you are stuck.",
            "See also.",
        ],
    ),
    Case(
        "images",
        (
            "Here is the architecture diagram:\n"
            "\n"
            "![Architecture diagram showing the server](https://example.com/arch.png)\n"
            "\n"
            "The server sits between the browser and the vendor. ![icon](i.png) Icons are dropped too."
        ),
        [
            "Here is the architecture diagram:",
            "The server sits between the browser and the vendor.",
            "Icons are dropped too.",
        ],
    ),
    Case(
        "emoji",
        (
            "Great job! 🎉 You finished the course 👏🏽 and earned a badge 🏅. Your team 👨\u200d👩\u200d👧\u200d👦 is "
            "proud, and so is your country 🇫🇷. Keep going ❤️ and stay curious ✨!"
        ),
        [
            "Great job!",
            "You finished the course and earned a badge. Your team is proud, and so is your country.",
            "Keep going and stay curious!",
        ],
    ),
    Case(
        "html",
        (
            "Press <kbd>Ctrl</kbd>+<kbd>C</kbd> to copy.<br>Then paste it with <b>Ctrl+V</b>. <div "
            'align="center">Centered text here.</div> Tom &amp; Jerry said &quot;hi&quot; &mdash; twice.'
        ),
        [
            "Press Ctrl + C to copy.",
            'Then paste it with Ctrl+V. Centered text here. Tom & Jerry said "hi" — twice.',
        ],
    ),
    Case(
        "think_block",
        (
            "<think>\n"
            "The user wants a short answer. I should be concise. Maybe mention Paris.\n"
            "</think>\n"
            "\n"
            "The capital of France is Paris. It is known for the Eiffel Tower."
        ),
        [
            "The capital of France is Paris.",
            "It is known for the Eiffel Tower.",
        ],
    ),
    Case(
        "think_inline",
        (
            "<think>They asked about tea. Keep it short.</think>Green tea has less caffeine than "
            "coffee. Black tea has a bit more than green tea."
        ),
        [
            "Green tea has less caffeine than coffee.",
            "Black tea has a bit more than green tea.",
        ],
    ),
    Case(
        "details_block",
        (
            "The answer is 42.\n"
            "\n"
            "<details>\n"
            "<summary>Show the reasoning</summary>\n"
            "\n"
            "We multiply six by seven. That gives 42.\n"
            "\n"
            "</details>\n"
            "\n"
            "Let me know if you want the derivation."
        ),
        [
            "The answer is 42.",
            "Let me know if you want the derivation.",
        ],
    ),
    Case(
        "html_comment",
        "This sentence is spoken. <!-- This comment is not spoken. --> This one is spoken too.",
        [
            "This sentence is spoken.",
            "This one is spoken too.",
        ],
    ),
    Case(
        "quotes_dialogue",
        (
            "She said, \"I will be there at noon.\" Then she left. He replied: 'Fine.' Nobody "
            'answered. "Really?" he asked again.'
        ),
        [
            'She said, "I will be there at noon."',
            "Then she left. He replied: 'Fine.' Nobody answered.",
            '"Really?" he asked again.',
        ],
    ),
    Case(
        "blockquote",
        (
            "As the saying goes:\n"
            "\n"
            "> The best time to plant a tree was twenty years ago.\n"
            "> The second best time is now.\n"
            "\n"
            "So start today."
        ),
        [
            "As the saying goes:",
            "The best time to plant a tree was twenty years ago.",
            "The second best time is now. So start today.",
        ],
    ),
    Case(
        "horizontal_rule",
        ("First section ends here.\n\n---\n\nSecond section starts here.\n\n***\n\nThird section is the last one."),
        [
            "First section ends here.",
            "Second section starts here. Third section is the last one.",
        ],
    ),
    Case(
        "spanish",
        ("¿Cómo estás? ¡Muy bien, gracias! Hoy hace sol en Madrid. ¿Quieres salir a pasear por el parque esta tarde?"),
        [
            "¿Cómo estás?",
            "¡Muy bien, gracias! Hoy hace sol en Madrid. ¿Quieres salir a pasear por el parque esta tarde?",
        ],
    ),
    Case(
        "french",
        (
            "Bonjour ! Comment allez-vous ? Il a dit : « Je reviens demain. » Puis il est parti. "
            "C'est la vie, n'est-ce pas ?"
        ),
        [
            "Bonjour !",
            "Comment allez-vous ? Il a dit : « Je reviens demain. »",
            "Puis il est parti. C'est la vie, n'est-ce pas ?",
        ],
    ),
    Case(
        "german",
        (
            "Das ist ein Beispiel. „Wie geht es dir?“ fragte sie. Er antwortete: „Gut, danke.“ "
            "Danach gingen beide nach Hause. Die Straße heißt Hauptstr. und liegt im Zentrum."
        ),
        [
            "Das ist ein Beispiel.",
            "„Wie geht es dir?“ fragte sie. Er antwortete: „Gut, danke.“ Danach gingen beide nach Hause.",
            "Die Straße heißt Hauptstr. und liegt im Zentrum.",
        ],
    ),
    Case(
        "japanese",
        "こんにちは。今日はいい天気ですね。東京では桜が咲いています。「花見に行きましょう。」と友達が言いました。",
        [
            "こんにちは。",
            "今日はいい天気ですね。東京では桜が咲いています。「花見に行きましょう。」と友達が言いました。",
        ],
    ),
    Case(
        "chinese",
        "你好！我是你的语音助手。今天我们来谈谈人工智能，它正在改变世界。你有什么问题吗？",
        [
            "你好！",
            "我是你的语音助手。今天我们来谈谈人工智能，它正在改变世界。",
            "你有什么问题吗？",
        ],
    ),
    Case(
        "hindi",
        "नमस्ते। आज मौसम बहुत अच्छा है। क्या आप बाहर घूमने जाना चाहेंगे? हम पार्क में चल सकते हैं।",
        [
            "नमस्ते।",
            "आज मौसम बहुत अच्छा है। क्या आप बाहर घूमने जाना चाहेंगे?",
            "हम पार्क में चल सकते हैं।",
        ],
    ),
    Case(
        "arabic",
        "مرحبا بك. كيف حالك اليوم؟ أتمنى أن تكون بخير. هل تريد أن نتحدث عن الطقس؟",
        [
            "مرحبا بك.",
            "كيف حالك اليوم؟ أتمنى أن تكون بخير. هل تريد أن نتحدث عن الطقس؟",
        ],
    ),
    Case(
        "long_no_punct",
        " ".join([FOX] * 25),
        [  # cut at a word boundary near 160 characters, not at the 400 cap
            f"{FOX} {FOX} {FOX} the quick brown fox jumps",
            f"over the lazy dog {FOX} {FOX} {FOX} the quick",
            f"brown fox jumps over the lazy dog {FOX} {FOX} the quick brown fox jumps over the",
            f"lazy dog {FOX} {FOX} {FOX} the quick brown",
            f"fox jumps over the lazy dog {FOX} {FOX} {FOX}",
            f"{FOX} {FOX} {FOX} the quick brown fox jumps",
            f"over the lazy dog {FOX} {FOX} {FOX}.",
        ],
    ),
    Case(
        "long_with_clauses",
        (
            "This sentence is deliberately long, because it tests the maximum length rule, which "
            "says that chunks over four hundred characters are split at clause boundaries; it "
            "keeps going with more and more words so that the limit is reached, and then it "
            "continues even further with extra detail about nothing in particular, just padding "
            "the text so that the chunker has to decide where to cut it, preferably at a comma or "
            "a semicolon rather than in the middle of a phrase, and finally it ends here."
        ),
        [
            "This sentence is deliberately long, because it tests the maximum length rule,",
            (
                "which says that chunks over four hundred characters are split at clause boundaries; "
                "it keeps going with more and more words so that the limit is reached,"
            ),
            (
                "and then it continues even further with extra detail about nothing in particular, just "
                "padding the text so that the chunker has to decide where to cut it,"
            ),
            "preferably at a comma or a semicolon rather than in the middle of a phrase, and finally it ends here.",
        ],
    ),
    Case(
        "short_sentences",
        ("Yes. I agree. It works. Try it. See? Done. That is all. Thanks for asking me about this topic today."),
        [
            "Yes.",
            "I agree. It works. Try it. See? Done. That is all.",
            "Thanks for asking me about this topic today.",
        ],
    ),
    Case(
        "mixed_markdown_demo",
        (
            "## About streaming\n"
            "\n"
            "Thanks for asking about **streaming**. I am the demo agent, so this reply is written "
            "offline.\n"
            "\n"
            "- Speech starts on the first sentence.\n"
            "- Markdown like this list is never read aloud.\n"
            "\n"
            "You can read more in [the project notes](https://example.com/voicechat/notes).\n"
            "\n"
            "```python\n"
            "print('code blocks stay on screen')\n"
            "```\n"
            "\n"
            "That is all for now. Ask me anything else!"
        ),
        [
            "About streaming.",
            "Thanks for asking about streaming. I am the demo agent, so this reply is written offline.",
            "Speech starts on the first sentence. Markdown like this list is never read aloud.",
            "You can read more in the project notes. That is all for now.",
            "Ask me anything else!",
        ],
    ),
    Case(
        "task_list",
        (
            "Your checklist for today:\n"
            "\n"
            "- [x] Write the tests\n"
            "- [ ] Fix the flaky one\n"
            "- [ ] Ship the release\n"
            "\n"
            "Good luck with the release."
        ),
        [
            "Your checklist for today:",
            "Write the tests. Fix the flaky one. Ship the release.",
            "Good luck with the release.",
        ],
    ),
    Case(
        "numbered_paren",
        ("Three reasons:\n1) it is fast\n2) it is cheap\n3) it is simple\nPick the one that matters most to you."),
        [
            "Three reasons:",
            "it is fast. it is cheap. it is simple. Pick the one that matters most to you.",
        ],
    ),
    Case(
        "footnotes_citations",
        (
            "Water boils at 100 °C at sea level [1]. At higher altitudes it boils at lower "
            "temperatures[^2]. This matters for cooking pasta in the mountains."
        ),
        [
            "Water boils at 100 °C at sea level.",
            "At higher altitudes it boils at lower temperatures.",
            "This matters for cooking pasta in the mountains.",
        ],
    ),
    Case(
        "math_symbols",
        (
            "If x < 5 and y > 3, then x + y = 8 is possible. The result is 2 × 3 = 6 and 10 ÷ 2 = "
            "5. Temperatures reached 30°C yesterday."
        ),
        [
            "If x less than 5 and y greater than 3, then x + y = 8 is possible.",
            "The result is 2 × 3 = 6 and 10 ÷ 2 = 5. Temperatures reached 30°C yesterday.",
        ],
    ),
    Case(
        "setext_heading",
        (
            "Introduction\n"
            "============\n"
            "\n"
            "This guide explains the basics.\n"
            "\n"
            "Details\n"
            "-------\n"
            "\n"
            "The details follow in the next part of the guide."
        ),
        [
            "Introduction.",
            "This guide explains the basics. Details. The details follow in the next part of the guide.",
        ],
    ),
    Case(
        "emoji_only",
        "👍🎉✨",
        [],
    ),
    Case(
        "heading_only",
        "# Summary",
        [
            "Summary.",
        ],
    ),
    Case(
        "soft_wrapped",
        (
            "This paragraph was wrapped by the model\n"
            "at an arbitrary point in the middle of a\n"
            "sentence. It should read as one paragraph\n"
            "without extra stops."
        ),
        [
            "This paragraph was wrapped by the model at an arbitrary point in the middle of a sentence.",
            "It should read as one paragraph without extra stops.",
        ],
    ),
    Case(
        "windows_newlines_tabs",
        ("First line with a tab\there.\n\n\tThis tab-indented line after a blank line is code.\n\nLast line."),
        [
            "First line with a tab here.",
            "Last line.",
        ],
    ),
    Case(
        "question_lowercase",
        ("Did it work? maybe not. Really? yes, really! It did work in the end, as far as I can tell from the logs."),
        [
            "Did it work? maybe not.",
            "Really? yes, really! It did work in the end, as far as I can tell from the logs.",
        ],
    ),
    Case(
        "dash_clauses",
        (
            "There are two ways to look at this problem — one is cheap and one is fast — and we "
            "chose the fast one. Another way - with plain hyphens - also appears in text."
        ),
        [
            "There are two ways to look at this problem —",
            "one is cheap and one is fast — and we chose the fast one.",
            "Another way - with plain hyphens - also appears in text.",
        ],
    ),
    Case(
        "version_numbers",
        (
            "Upgrade from version 4.2 to 5.2.1 before the end of the year. Node v20.11.0 is also "
            "supported. The file is config.yaml in the root folder."
        ),
        [
            "Upgrade from version 4.2 to 5.2.1 before the end of the year.",
            "Node v20.11.0 is also supported. The file is config.yaml in the root folder.",
        ],
    ),
    Case(
        "email_and_handles",
        ("Contact jane.doe@example.com or call +1 555 0100. Our office is open from 9 a.m. to 5 p.m. on weekdays."),
        [
            "Contact jane.doe@example.com or call +1 555 0100.",
            "Our office is open from 9 a.m. to 5 p.m. on weekdays.",
        ],
    ),
    Case(
        "bold_heading_lines",
        ("**Pros**\n- Fast\n- Cheap\n\n**Cons**\n- Hard to debug\n\nOverall I would pick it again."),
        [
            "Pros.",
            "Fast. Cheap. Cons. Hard to debug. Overall I would pick it again.",
        ],
    ),
    Case(
        "closing_paren_quote",
        'The function returns None (see the docs.) It never raises. "This is quoted." The end.',
        [
            "The function returns None (see the docs.)",
            'It never raises. "This is quoted." The end.',
        ],
    ),
    Case(
        "numbers_sentence_start",
        "The year was 2023. 2024 brought many changes. In total 3 things changed.",
        [
            "The year was 2023.",
            "2024 brought many changes. In total 3 things changed.",
        ],
    ),
    Case(
        "recipe",
        (
            "# Simple pancakes\n"
            "\n"
            "These pancakes take about 20 minutes. You will need:\n"
            "\n"
            "- 200 g flour\n"
            "- 2 eggs\n"
            "- 300 ml milk\n"
            "- a pinch of salt\n"
            "\n"
            "## Steps\n"
            "\n"
            "1. Whisk the eggs and milk together.\n"
            "2. Add the flour slowly, stirring all the time.\n"
            "3. Rest the batter for 10 min.\n"
            "4. Fry each pancake for about 1 min per side.\n"
            "\n"
            "Enjoy them warm! 🥞"
        ),
        [
            "Simple pancakes.",
            "These pancakes take about 20 minutes. You will need:",
            "200 g flour. 2 eggs. 300 ml milk. a pinch of salt.",
            "Steps. Whisk the eggs and milk together. Add the flour slowly, stirring all the time.",
            "Rest the batter for 10 min. Fry each pancake for about 1 min per side.",
            "Enjoy them warm!",
        ],
    ),
    Case(
        "troubleshooting",
        (
            "It looks like the server cannot find your settings module. Here is what usually fixes it:\n"
            "\n"
            "1. Check that `DJANGO_SETTINGS_MODULE` is set:\n"
            "   ```bash\n"
            "   echo $DJANGO_SETTINGS_MODULE\n"
            "   ```\n"
            "2. Make sure the project root is on `PYTHONPATH`.\n"
            "3. Restart the shell and try again.\n"
            "\n"
            'If it still fails, paste the full traceback (the lines starting with `File "..."`) '
            "and I will take a look."
        ),
        [
            "It looks like the server cannot find your settings module.",
            "Here is what usually fixes it: Check that DJANGO SETTINGS MODULE is set:",
            "Make sure the project root is on PYTHONPATH. Restart the shell and try again.",
            (
                'If it still fails, paste the full traceback (the lines starting with File "...") and '
                "I will take a look."
            ),
        ],
    ),
    Case(
        "nested_quote_list",
        (
            "The release notes say:\n"
            "\n"
            "> **Breaking changes**\n"
            "> - The `--fast` flag was removed\n"
            "> - Config files now use TOML\n"
            ">\n"
            "> Please update your scripts.\n"
            "\n"
            "In short, check your scripts before upgrading."
        ),
        [
            "The release notes say:",
            "Breaking changes. The --fast flag was removed. Config files now use TOML.",
            "Please update your scripts. In short, check your scripts before upgrading.",
        ],
    ),
    Case(
        "think_then_markdown",
        (
            "<think>\n"
            "The user asks for a comparison. A table is best. Remember: keep it brief.\n"
            "</think>\n"
            "**Short answer:** use PostgreSQL in production.\n"
            "\n"
            "| Database | Good for |\n"
            "|---|---|\n"
            "| SQLite | tests, demos |\n"
            "| PostgreSQL | production |\n"
            "\n"
            "Both work with Django out of the box ✅."
        ),
        [
            "Short answer: use PostgreSQL in production.",
            "Database, Good for. SQLite, tests, demos. PostgreSQL, production.",
            "Both work with Django out of the box.",
        ],
    ),
    Case(
        "japanese_long",
        (
            "東京は日本の首都で、世界で最も人口の多い都市圏の一つです。毎年たくさんの観光客が訪れ、寺や神社、美術館、そして美味しい料理を楽しんでいます。春には桜が咲き、秋には紅葉が美し"
            "いです。ぜひ一度訪れてみてください！"
        ),
        [
            "東京は日本の首都で、世界で最も人口の多い都市圏の一つです。",
            "毎年たくさんの観光客が訪れ、寺や神社、美術館、そして美味しい料理を楽しんでいます。",
            "春には桜が咲き、秋には紅葉が美しいです。ぜひ一度訪れてみてください！",
        ],
    ),
    Case(
        "japanese_quotes_fullwidth",
        "先生は「明日はテストです。」と言いました。本当ですか？ はい、本当です！ "
        "準備はできていますか．もう少し勉強します…。",
        [
            "先生は「明日はテストです。」と言いました。",
            "本当ですか？ はい、本当です！ 準備はできていますか．もう少し勉強します…。",
        ],
    ),
    Case(
        "chinese_quotes",
        "他说：“我明天会来。”然后就走了。你相信他吗？我觉得他会来的，因为他从来没有失约过，而且他说话一向算数。",
        [
            "他说：“我明天会来。”",
            "然后就走了。你相信他吗？我觉得他会来的，因为他从来没有失约过，而且他说话一向算数。",
        ],
    ),
    Case(
        "japanese_mixed_markdown",
        (
            "## 手順\n\n1. **Python**をインストールします。\n2. `pip install requests`を実行します。\n\n"
            "詳しくは[公式サイト](https://example.com)を見てください。"
        ),
        [
            "手順。",
            "Pythonをインストールします。pip install requestsを実行します。",
            "詳しくは公式サイトを見てください。",
        ],
    ),
    Case(
        "latex_inline",
        (
            "The area of a circle is $A = \\pi r^2$, where $r$ is the radius. Einstein wrote $E = "
            "mc^2$. Euler's identity \\(e^{i\\pi} + 1 = 0\\) links five constants, and $\\frac{1}{2}$ "
            "of $10$ is $5$."
        ),
        [
            "The area of a circle is A equals pi r squared,",
            "where r is the radius. Einstein wrote E equals m c squared.",
            ("Euler's identity e to the power of i pi plus 1 equals 0 links five constants, and one half of 10 is 5."),
        ],
    ),
    Case(
        "latex_display",
        (
            "The solutions of $ax^2 + bx + c = 0$ are:\n\n$$\nx = \\frac{-b \\pm \\sqrt{b^2-4ac}}{2a}\n"
            "$$\n\nThe Pythagorean theorem is \\[a^2 + b^2 = c^2\\] for a right triangle. A system "
            "looks like this:\n\n$$\n\\begin{aligned} x + y &= 3 \\\\ x - y &= 1 \\end{aligned}\n$$\n\n"
            "Solve it by adding the equations."
        ),
        [
            "The solutions of a x squared plus b x plus c equals 0 are:",
            "x equals minus b plus or minus the square root of b squared minus 4 a c, all over 2 a.",
            "The Pythagorean theorem is a squared plus b squared equals c squared for a right triangle.",
            "A system looks like this: (formula shown on screen).",
            "Solve it by adding the equations.",
        ],
    ),
    Case(
        "latex_calculus",
        (
            "The derivative is $f'(x) = 2x$, and $\\int_0^1 x^2\\,dx = \\frac{1}{3}$. We know that "
            "$\\lim_{x \\to 0} \\frac{\\sin x}{x} = 1$ is a classic. Also $\\alpha \\le \\beta$ and $x "
            "\\neq 0$, $a_{n+1} = 2a_n$."
        ),
        [
            "The derivative is f prime of x equals 2 x,",
            "and the integral from 0 to 1 of x squared d x equals one third.",
            "We know that the limit as x approaches 0 of sine x over x equals 1 is a classic.",
            ("Also alpha is less than or equal to beta and x is not equal to 0, a sub n plus 1 equals 2 a sub n."),
        ],
    ),
    Case(
        "prices_not_math",
        (
            "The basic plan is $5 and the pro plan is $10 per month. A yearly plan costs $99.99, "
            "so you save about $20. Prices range from $5-$10 depending on the region."
        ),
        [
            "The basic plan is $5 and the pro plan is $10 per month.",
            "A yearly plan costs $99.99, so you save about $20.",
            "Prices range from $5-$10 depending on the region.",
        ],
    ),
    Case(
        "comment_after_sentence",
        (
            "Your order has shipped and should arrive soon. <!-- tracking: internal note, not for "
            "the user --> You can track it from your account page."
        ),
        [
            "Your order has shipped and should arrive soon.",
            "You can track it from your account page.",
        ],
    ),
    Case(
        "double_underscore",
        ("Query the items__product table, then call the __init__ method and check MAX__SIZE before you export."),
        [
            "Query the items product table, then call the init method and check MAX SIZE before you export.",
        ],
    ),
    Case(
        "footnote_definitions",
        (
            "The Great Wall is visible from low orbit only under ideal conditions.[^1] Most "
            "astronauts say they could not see it.[^2]\n\n[^1]: Under clear skies, with the sun low.\n"
            "[^2]: Several NASA interviews confirm this.\n[3]: https://example.com/great-wall"
        ),
        [
            "The Great Wall is visible from low orbit only under ideal conditions.",
            "Most astronauts say they could not see it. Under clear skies, with the sun low.",
            "Several NASA interviews confirm this.",
        ],
    ),
    Case(
        "url_after_preposition",
        (
            "The documentation lives at https://docs.example.com/guide. You can also send feedback "
            "to https://example.com/feedback or read the notes (https://example.com/notes)."
        ),
        [
            "The documentation lives at the link.",
            "You can also send feedback to the link or read the notes.",
        ],
    ),
    Case(
        "run_on_clauses",
        (
            "so basically what you want to do is open the settings page and then find the section "
            "called advanced where there is a toggle for streaming which you should turn on and "
            "then save the settings and reload the page after which the replies will start "
            "speaking right away without waiting for the whole answer to be written out"
        ),
        [
            (
                "so basically what you want to do is open the settings page and then find the section "
                "called advanced where there is a toggle for streaming which you should turn"
            ),
            (
                "on and then save the settings and reload the page after which the replies will start "
                "speaking right away without waiting for the whole answer to be written out."
            ),
        ],
    ),
]
