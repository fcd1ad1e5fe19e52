import { renderToStaticMarkup } from "react-dom/server";
import { Markdown, plainText } from "./markdown";
import type { WordTiming } from "./protocol";

/** The timed words of `source` at their offsets, as the server sends them (times are not looked at here). */
function timed(source: string, ...words: string[]): WordTiming[] {
  let from = 0;
  return words.map((word, i) => {
    const start = source.indexOf(word, from);
    from = start + word.length;
    return [start, start + word.length, i * 100, i * 100 + 90];
  });
}

/** The text of each word span, by its data-w index. */
function spans(out: string): [number, string][] {
  return [...out.matchAll(/<span class="w" data-w="(\d+)">([^<]*)<\/span>/g)].map((m) => [Number(m[1]), m[2]]);
}

const html = (text: string, words?: WordTiming[], streaming = false) => renderToStaticMarkup(<Markdown text={text} words={words} streaming={streaming} />);

/** Every tag the renderer may produce; anything else in the output would be injected markup. */
const ALLOWED_TAGS = new Set(["p", "strong", "em", "code", "pre", "a", "h3", "h4", "ul", "ol", "li", "blockquote", "br", "span"]);

function assertSafe(out: string): void {
  for (const [, tag] of out.matchAll(/<\/?([a-zA-Z0-9-]+)/g)) expect(ALLOWED_TAGS).toContain(tag.toLowerCase());
  expect(out).not.toMatch(/<[^>]*\son[a-z]+\s*=/i); // no event-handler attribute on any element
  for (const [, href] of out.matchAll(/href="([^"]*)"/g)) expect(href).toMatch(/^(https?:\/\/|mailto:)/);
}

describe("Markdown", () => {
  it("renders headings, lists, emphasis, code and links", () => {
    const out = html("# Title\n\n- **bold** item\n- `code`\n\n```js\nlet x = 1;\n```\n\nSee [docs](https://example.com).");
    expect(out).toContain("<h3>Title</h3>");
    expect(out).toContain("<li><strong>bold</strong> item</li>");
    expect(out).toContain("<pre><code>let x = 1;</code></pre>");
    expect(out).toContain('<a href="https://example.com" target="_blank" rel="noopener noreferrer nofollow">docs</a>');
    assertSafe(out);
  });

  it("renders an unfinished reply as it streams (an open code fence, a half link)", () => {
    assertSafe(html("Look:\n\n```py\nprint(1)"));
    expect(html("Look:\n\n```py\nprint(1)")).toContain("<pre><code>print(1)</code></pre>");
    expect(html("see [the do")).toBe("<p>see [the do</p>");
  });

  it.each([
    ["a script tag", "<script>alert(1)</script>"],
    ["an image with onerror", '<img src=x onerror="alert(2)">'],
    ["an svg with onload", "<svg onload=alert(3)>"],
    ["an iframe", '<iframe src="javascript:alert(4)"></iframe>'],
    ["a raw anchor", '<a href="javascript:alert(5)">x</a>'],
    ["html inside emphasis", "**<img src=x onerror=alert(6)>**"],
    ["html inside a list", "- <script>alert(7)</script>"],
    ["html inside a heading", "# <b onmouseover=alert(8)>hi</b>"],
    ["html inside a code block", "```\n<script>alert(9)</script>\n```"],
    ["html inside a link label", "[<img src=x onerror=alert(10)>](https://example.com)"],
  ])("never renders raw HTML: %s", (_name, source) => {
    const out = html(source);
    assertSafe(out);
    expect(out).toContain("&lt;"); // shown as text
  });

  it.each([
    "[click](javascript:alert(1))",
    "[click](JavaScript:alert(1))",
    "[click](%20javascript:alert(1))",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD4=)",
    "[click](java&#115;cript:alert(1))",
    "[click](//evil.example/x)",
    "[click](/relative)",
  ])("refuses a link that is not http(s) or mailto: %s", (source) => {
    const out = html(source);
    expect(out).not.toContain("href");
    expect(out).toContain("click");
    assertSafe(out);
  });

  it("keeps a quote in a URL inside the attribute", () => {
    const out = html('[x](https://example.com/"onmouseover="alert(1))');
    assertSafe(out);
    expect(out).toContain("&quot;onmouseover=&quot;");
  });

  it("never shows SSML pauses, and holds back one that is still arriving", () => {
    expect(html('One.<break time="1.5s"/> Two.')).toBe("<p>One. Two.</p>");
    expect(html("One.<break time='2s' /> Two. <BREAK time=\"1s\"/>")).toBe("<p>One. Two. </p>");
    expect(html('Wait.<break time="1.', undefined, true)).toBe("<p>Wait.</p>");
    expect(html("a <b", undefined, false)).toBe("<p>a &lt;b</p>"); // once complete, text is text
  });
});

describe("Markdown with word timings", () => {
  it("wraps each timed word where it is rendered, past the markup around it", () => {
    const source = "### Hello there\n\nGood **question** about `code` and [links](https://example.com).";
    const words = timed(source, "Hello", "there", "Good", "question", "about", "code", "and", "links");
    const out = html(source, words);
    expect(spans(out)).toEqual([
      [0, "Hello"],
      [1, "there"],
      [2, "Good"],
      [3, "question"],
      [4, "about"],
      [5, "code"],
      [6, "and"],
      [7, "links"],
    ]);
    expect(out).toContain('<strong><span class="w" data-w="3">question</span></strong>');
    expect(out).toContain('<a href="https://example.com" target="_blank" rel="noopener noreferrer nofollow"><span class="w" data-w="7">links</span></a>');
    assertSafe(out);
  });

  it("finds words in list items, quotes and later paragraphs", () => {
    const source = "Intro line.\n\n- first item\n2. second item\n\n> quoted words\n\nLast one.";
    const words = timed(source, "Intro", "first", "second", "quoted", "Last");
    expect(spans(html(source, words)).map(([, text]) => text)).toEqual(["Intro", "first", "second", "quoted", "Last"]);
  });

  it("gives a word split by markup one index on every piece", () => {
    const source = "un**believ**able";
    const out = html(source, [[0, 16, 0, 500]]);
    expect(spans(out)).toEqual([
      [0, "un"],
      [0, "believ"],
      [0, "able"],
    ]);
  });

  it("keeps offsets right after a pause that is not shown", () => {
    const source = 'Stop.<break time="1s"/> Go now.';
    const out = html(source, timed(source, "Stop", "Go", "now"));
    expect(spans(out)).toEqual([
      [0, "Stop"],
      [1, "Go"],
      [2, "now"],
    ]);
    expect(out).not.toContain("break");
  });

  it("renders the same text as without timings", () => {
    const source = "# Title\n\nSome *emphasis* and `code`.\n\n```\nblock\n```";
    const words = timed(source, "Title", "Some", "emphasis", "and");
    const strip = (out: string) => out.replace(/<\/?span[^>]*>/g, "");
    expect(strip(html(source, words))).toBe(html(source));
  });
});


it("says the rendered text without its markup, for screen readers", () => {
  expect(plainText('### Title\n\nGood **bold** and `code`, [a link](https://x.example).<break time="1s"/>\n\n- one\n- two')).toBe(
    "Title\nGood bold and code, a link.\none\ntwo",
  );
});
