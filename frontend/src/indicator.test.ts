import { initialState, type ChatState } from "./chat";
import { indicator } from "./indicator";
import type { NowPlaying } from "./player";

const idle: NowPlaying = { turn: 1, label: null, state: "idle", audible: false, reported: true };
const running = (extra: Partial<ChatState> = {}): ChatState => ({ ...initialState("c", 4000), running: true, voiceExpected: true, streamingId: "a1", ...extra });

describe("the toolbar's indicator", () => {
  it("says writing and waiting for voice before any sound", () => {
    expect(indicator(running(), { ...idle, label: "a1", state: "buffering" }, true, null)).toEqual({ writing: true, voice: "waiting", queuePosition: null });
  });

  it("says speaking only while the reply is audible", () => {
    expect(indicator(running(), { ...idle, label: "a1", state: "playing", audible: true }, true, null).voice).toBe("speaking");
    expect(indicator(running({ running: false, streamingId: null }), { ...idle, label: "a1", state: "draining", audible: true }, true, null).voice).toBe("speaking");
  });

  it("never says speaking or waiting while auto-play is off and nothing plays", () => {
    expect(indicator(running({ voiceExpected: false }), idle, false, null)).toEqual({ writing: true, voice: null, queuePosition: null });
    expect(indicator(running(), idle, false, null).voice).toBeNull(); // switched off mid-turn
  });

  it("says queued with the position in line", () => {
    const state = running({ queued: { messageId: "a1", position: 3 } });
    expect(indicator(state, idle, true, null)).toEqual({ writing: true, voice: "queued", queuePosition: 3 });
  });

  it("leaves a replay to the reply's own control", () => {
    const now = { ...idle, label: "a0", state: "playing" as const, audible: true };
    expect(indicator(initialState("c", 4000), now, true, "a0")).toEqual({ writing: false, voice: null, queuePosition: null });
  });

  it("waits for the voice of an on-demand Play", () => {
    const state = { ...initialState("c", 4000), messages: [{ id: "a1", role: "assistant" as const, text: "x", status: "complete", synthesizing: true }] };
    expect(indicator(state, idle, false, null).voice).toBe("waiting");
  });
});
