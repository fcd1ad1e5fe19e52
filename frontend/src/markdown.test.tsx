import { renderToStaticMarkup } from "react-dom/server";
import { Markdown } from "./markdown";

const html = (text: string) => renderToStaticMarkup(<Markdown text={text} />);

describe("Markdown", () => {
  it("renders headings, lists, emphasis, code and links", () => {
    const out = html("# Title\n\n- **bold** item\n- `code`\n\n```js\nlet x = 1;\n```\n\nSee [docs](https://example.com).");
    expect(out).toContain("<h3>Title</h3>");
    expect(out).toContain("<li><strong>bold</strong> item</li>");
    expect(out).toContain("<pre><code>let x = 1;</code></pre>");
    expect(out).toContain('<a href="https://example.com" target="_blank" rel="noopener noreferrer nofollow">docs</a>');
  });

  it("never renders raw HTML", () => {
    const out = html('<script>alert(1)</script> <img src=x onerror="alert(2)">');
    expect(out).not.toContain("<script");
    expect(out).not.toContain("<img");
    expect(out).toContain("&lt;script&gt;");
  });

  it("refuses javascript: and data: links", () => {
    const out = html("[click](javascript:alert(1)) [data](data:text/html;base64,xx)");
    expect(out).not.toContain("href");
    expect(out).toContain("click");
  });
});
