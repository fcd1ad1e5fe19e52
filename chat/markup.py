"""Message text as HTML for the admin: markdown rendered, raw HTML shown as typed, the result sanitised."""

from __future__ import annotations

import html

import markdown
import nh3
from django.utils.html import strip_tags
from django.utils.safestring import SafeString, mark_safe

# What the markdown below can produce, and nothing else: no iframes, styles or scripts.
ALLOWED_TAGS = {
    *("p", "br", "hr", "strong", "em", "b", "i", "del", "code", "pre", "blockquote"),
    *("ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6"),
    *("table", "thead", "tbody", "tr", "th", "td"),
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = {"http", "https", "mailto"}


def _converter() -> markdown.Markdown:
    # nl2br: in a chat, a line break someone typed is meant as one, not as a space.
    converter = markdown.Markdown(extensions=["fenced_code", "nl2br", "sane_lists", "tables"], output_format="html")
    # A message is text a person or an LLM wrote: `<b>` in it is something they typed, to be shown
    # as such, not markup to obey. Without these two handlers markdown escapes it like any text.
    converter.preprocessors.deregister("html_block")
    converter.inlinePatterns.deregister("html")
    # An image would load from its host as soon as a reviewer opens the page and tell it who reads
    # the transcript; left as the text that was written, it loads nothing.
    for pattern in ("image_link", "image_reference", "short_image_ref"):
        converter.inlinePatterns.deregister(pattern)
    return converter


def markdown_html(text: str) -> SafeString:
    """The text rendered as markdown, with every tag, attribute and URL outside the allowlists removed."""
    rendered = _converter().convert(text)
    cleaned = nh3.clean(
        rendered,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )
    return mark_safe(cleaned)  # nh3 has just removed everything outside the allowlists


def markdown_plain(text: str) -> str:
    """What the rendered text says, without its markup: `### Title **bold**` reads `Title bold`."""
    return " ".join(html.unescape(strip_tags(markdown_html(text))).split())
