import type { WordTiming } from "./protocol";
import { byTime, firstWordEndingAfter, visibleLength, wordAt } from "./words";

const words: WordTiming[] = [
  [0, 5, 0, 300],
  [6, 11, 320, 700],
  [12, 14, 1500, 1700], // after a long pause
];

describe("word timings", () => {
  const order = byTime(words);

  it("finds the word being heard, and holds it through a short pause only", () => {
    expect(wordAt(words, order, 0)).toBe(0);
    expect(wordAt(words, order, 310)).toBe(0); // between two words that follow each other closely
    expect(wordAt(words, order, 500)).toBe(1);
    expect(wordAt(words, order, 1200)).toBe(-1); // a long pause lights nothing
    expect(wordAt(words, order, 1600)).toBe(2);
    expect(wordAt(words, order, 5000)).toBe(-1);
    expect(wordAt(words, order, -10)).toBe(-1);
  });

  it("searches by time even when display order and time order differ", () => {
    const shuffled: WordTiming[] = [
      [0, 3, 400, 500],
      [4, 7, 0, 100],
    ];
    expect(wordAt(shuffled, byTime(shuffled), 50)).toBe(1);
    expect(wordAt(shuffled, byTime(shuffled), 450)).toBe(0);
  });

  it("finds the first word that ends after an offset", () => {
    expect(firstWordEndingAfter(words, 0)).toBe(0);
    expect(firstWordEndingAfter(words, 5)).toBe(1);
    expect(firstWordEndingAfter(words, 13)).toBe(2);
    expect(firstWordEndingAfter(words, 20)).toBe(3);
  });

  it("holds back an unfinished one only while streaming", () => {
    expect(visibleLength("Hi <brea", true)).toBe(3);
    expect(visibleLength("Hi <brea", false)).toBe(8);
    expect(visibleLength("Hi <b", true)).toBe(3);
    expect(visibleLength("Hi there", true)).toBe(8);
  });
});
