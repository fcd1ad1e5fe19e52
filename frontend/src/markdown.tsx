// A small markdown renderer that builds React elements and never injects HTML: raw tags in the text
// are shown as text, only http(s) and mailto links become anchors, and SSML `<break/>` pauses are dropped.
//
// Every piece of text keeps its offset in the source, so word timings (offsets into the reply's text as
// sent) find their rendered words: each timed word is wrapped in `<span class="w" data-w=N>` (a word
// split by markup, like **bo**ld, gets one span per piece, all with the same N).
import { Fragment, type ReactNode } from "react";
import type { WordTiming } from "./protocol";
import { firstWordEndingAfter, visibleLength } from "./words";

const SAFE_URL = /^(https?:\/\/|mailto:)/i;
const INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\n]+\*|_[^_\n]+_)|(\[[^\]\n]+\]\([^)\s]+\))|(<break\b[^<>]*\/?>)/i;

interface Context {
  words: readonly WordTiming[];
}

/** Text from source offset `start`, with its timed words wrapped in spans. */
function renderText(text: string, start: number, context: Context, key: string): ReactNode[] {
  const { words } = context;
  if (!words.length || !text) return [text];
  const end = start + text.length;
  const out: ReactNode[] = [];
  let at = start;
  for (let w = firstWordEndingAfter(words, start); w < words.length && words[w][0] < end; w++) {
    const from = Math.max(words[w][0], at);
    const to = Math.min(words[w][1], end);
    if (to <= from) continue;
    if (from > at) out.push(text.slice(at - start, from - start));
    out.push(
      <span key={`${key}w${w}`} className="w" data-w={w}>
        {text.slice(from - start, to - start)}
      </span>,
    );
    at = to;
  }
  if (at < end) out.push(text.slice(at - start));
  return out;
}

export function renderInline(text: string, start: number, context: Context, keyPrefix = "i"): ReactNode[] {
  const out: ReactNode[] = [];
  let rest = text;
  let at = start;
  let n = 0;
  while (rest) {
    const match = INLINE.exec(rest);
    const key = `${keyPrefix}-${n++}`;
    if (!match) {
      out.push(...renderText(rest, at, context, key));
      break;
    }
    if (match.index > 0) out.push(...renderText(rest.slice(0, match.index), at, context, `${key}t`));
    const token = match[0];
    const tokenAt = at + match.index;
    if (match[1]) out.push(<code key={key}>{renderText(token.slice(1, -1), tokenAt + 1, context, key)}</code>);
    else if (match[2]) out.push(<strong key={key}>{renderInline(token.slice(2, -2), tokenAt + 2, context, key)}</strong>);
    else if (match[3]) out.push(<em key={key}>{renderInline(token.slice(1, -1), tokenAt + 1, context, key)}</em>);
    else if (match[4]) {
      const [, label, url] = /^\[([^\]]+)\]\(([^)\s]+)\)$/.exec(token) ?? [];
      const shown = renderText(label ?? "", tokenAt + 1, context, key);
      out.push(
        SAFE_URL.test(url ?? "") ? (
          <a key={key} href={url} target="_blank" rel="noopener noreferrer nofollow">
            {shown}
          </a>
        ) : (
          <Fragment key={key}>{shown}</Fragment>
        ),
      );
    } // match[5]: a pause for the voice, never shown
    rest = rest.slice(match.index + token.length);
    at = tokenAt + token.length;
  }
  return out;
}

interface Span {
  text: string;
  /** Offset of `text` in the source. */
  start: number;
}

type Block =
  | ({ kind: "code" } & Span)
  | ({ kind: "heading"; level: number } & Span)
  | { kind: "list"; ordered: boolean; items: Span[] }
  | ({ kind: "quote" } & Span)
  | ({ kind: "paragraph" } & Span);

const ITEM = /^(\s*(?:[-*+]|\d{1,3}[.)])\s+)(.*)$/;

export function parseBlocks(source: string): Block[] {
  const blocks: Block[] = [];
  const lines = source.split("\n");
  const starts: number[] = [];
  lines.reduce((offset, line) => (starts.push(offset), offset + line.length + 1), 0);
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = /^\s{0,3}(`{3,}|~{3,})/.exec(line);
    if (fence) {
      const first = ++i;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) i++;
      blocks.push({ kind: "code", text: lines.slice(first, i).join("\n"), start: starts[first] ?? source.length });
      i++;
      continue;
    }
    const heading = /^(#{1,6}\s+)(.*)$/.exec(line);
    if (heading) {
      blocks.push({ kind: "heading", level: heading[1].trim().length, text: heading[2], start: starts[i] + heading[1].length });
      i++;
      continue;
    }
    const item = ITEM.exec(line);
    if (item) {
      const ordered = /\d/.test(item[1]);
      const items: Span[] = [];
      let next: RegExpExecArray | null;
      while (i < lines.length && (next = ITEM.exec(lines[i]))) {
        items.push({ text: next[2], start: starts[i] + next[1].length });
        i++;
      }
      blocks.push({ kind: "list", ordered, items });
      continue;
    }
    if (line.startsWith(">")) {
      const prefix = /^>\s?/.exec(line)?.[0].length ?? 1;
      blocks.push({ kind: "quote", text: line.slice(prefix), start: starts[i] + prefix });
      i++;
      continue;
    }
    if (!line.trim()) {
      i++;
      continue;
    }
    const first = i;
    while (i < lines.length && lines[i].trim() && !/^(#{1,6}\s|\s*([-*+]|\d{1,3}[.)])\s|\s{0,3}(`{3}|~{3})|>)/.test(lines[i])) i++;
    blocks.push({ kind: "paragraph", text: lines.slice(first, i).join("\n"), start: starts[first] });
  }
  return blocks;
}

const INLINE_ALL = new RegExp(INLINE.source, "gi");

/** What the rendered text says, without markup (for screen-reader announcements). */
export function plainText(source: string): string {
  const inline = (text: string): string =>
    text.replace(INLINE_ALL, (token, code, strong, em, link) => {
      if (code) return token.slice(1, -1);
      if (strong) return inline(token.slice(2, -2));
      if (em) return inline(token.slice(1, -1));
      if (link) return /^\[([^\]]+)\]/.exec(token)?.[1] ?? "";
      return ""; // a pause for the voice
    });
  return parseBlocks(source)
    .map((block) => (block.kind === "list" ? block.items.map((item) => inline(item.text)).join("\n") : block.kind === "code" ? block.text : inline(block.text)))
    .join("\n");
}

const NO_WORDS: readonly WordTiming[] = [];

interface MarkdownProps {
  text: string;
  /** Word timings (display offsets into `text`) whose words become addressable spans. */
  words?: readonly WordTiming[] | null;
  /** The text is still arriving: an unfinished `<break` at its end is held back. */
  streaming?: boolean;
}

export function Markdown({ text, words, streaming = false }: MarkdownProps): ReactNode {
  const context: Context = { words: words ?? NO_WORDS };
  return parseBlocks(text.slice(0, visibleLength(text, streaming))).map((block, n) => {
    const key = `b${n}`;
    switch (block.kind) {
      case "code":
        return (
          <pre key={key}>
            <code>{renderText(block.text, block.start, context, key)}</code>
          </pre>
        );
      case "heading": {
        const Tag = block.level <= 2 ? "h3" : "h4"; // inside a chat bubble, under the page's own headings
        return <Tag key={key}>{renderInline(block.text, block.start, context, key)}</Tag>;
      }
      case "list": {
        const items = block.items.map((item, j) => <li key={j}>{renderInline(item.text, item.start, context, `${key}-${j}`)}</li>);
        return block.ordered ? <ol key={key}>{items}</ol> : <ul key={key}>{items}</ul>;
      }
      case "quote":
        return <blockquote key={key}>{renderInline(block.text, block.start, context, key)}</blockquote>;
      case "paragraph":
        return <p key={key}>{renderInline(block.text, block.start, context, key)}</p>;
    }
  });
}
