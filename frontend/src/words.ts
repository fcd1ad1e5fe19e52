// Word timings of a reply's audio (WordTiming: display offsets and ms), and the unfinished SSML pause a
// streaming reply may end with (markdown.tsx drops the finished ones).
import type { WordTiming } from "./protocol";

/** A `<break …` cut off by streaming at the very end of the text so far. */
const PARTIAL_BREAK = /<(?:b(?:r(?:e(?:a(?:k(?:\s[^<>]*)?)?)?)?)?)?$/i;

/** Where the text shown ends: while a reply streams, an unfinished `<break` at its end waits for the rest. */
export function visibleLength(text: string, streaming: boolean): number {
  const match = streaming ? PARTIAL_BREAK.exec(text) : null;
  return match ? match.index : text.length;
}

/** Keep a word lit through a short pause after it, so the highlight does not flicker between words. */
const HOLD_MS = 250;

/** Words ordered by when they are heard, for binary search (indexes point into the original list). */
export function byTime(words: readonly WordTiming[]): number[] {
  return words.map((_, i) => i).sort((a, b) => words[a][2] - words[b][2] || a - b);
}

/** The index (into `words`) of the word heard at `ms`, or -1 between words and outside the audio. */
export function wordAt(words: readonly WordTiming[], order: readonly number[], ms: number): number {
  let lo = 0;
  let hi = order.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (words[order[mid]][2] <= ms) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  if (found < 0) return -1;
  const index = order[found];
  return ms < Math.max(words[index][3], words[index][2]) + HOLD_MS ? index : -1;
}

/** The first word (index into `words`) whose display range ends after `offset`, by binary search. */
export function firstWordEndingAfter(words: readonly WordTiming[], offset: number): number {
  let lo = 0;
  let hi = words.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (words[mid][1] <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
