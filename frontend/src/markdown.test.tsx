import { renderToStaticMarkup } from "react-dom/server";
import { Markdown } from "./markdown";

const html = (text: string) => renderToStaticMarkup(<Markdown text={text} />);

/** Every tag the renderer may produce; anything else in the output would be injected markup. */
const ALLOWED_TAGS = new Set(["p", "strong", "em", "code", "pre", "a", "h3", "h4", "ul", "ol", "li", "blockquote", "br"]);

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
});
