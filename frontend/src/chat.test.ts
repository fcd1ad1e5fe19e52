import { GREETING_ID, initialState, reducer, type Action, type ChatState } from "./chat";

const run = (actions: Action[], state: ChatState = initialState(null, 4000)) => actions.reduce(reducer, state);
const at = "2030-01-01T12:00:00Z";

describe("the chat reducer", () => {
  it("merges history pages without duplicates and takes the server's fields for known messages", () => {
    const before = run([
      { type: "user_message", id: "u1", text: "Hi", voiceExpected: true, at },
      { type: "reply_started", id: "a1", at },
    ]);
    const older = reducer(before, { type: "history", older: true, messages: [{ id: "u0", role: "user", text: "Earlier", status: "complete" }, { id: "u1", role: "user", text: "Hi", status: "complete" }] });
    expect(older.messages.map((m) => m.id)).toEqual(["u0", "u1", "a1"]);
    const resync = reducer(older, { type: "history", older: false, messages: [{ id: "a1", role: "assistant", text: "Hello there.", status: "interrupted", audio_url: "/x" }] });
    expect(resync.messages.map((m) => m.id)).toEqual(["u0", "u1", "a1"]);
    expect(resync.messages[2]).toMatchObject({ status: "interrupted", audio_url: "/x" });
  });

  it("replaces the live greeting with the stored one once the conversation has history", () => {
    const greeted = run([{ type: "reply_started", id: GREETING_ID, at, greeting: true, text: "Hello!" }]);
    expect(greeted.messages[0]).toMatchObject({ status: "complete", writing: false, greeting: true });
    expect(greeted.streamingId).toBeNull(); // a greeting arrives whole
    const stored = reducer(greeted, { type: "history", older: false, messages: [{ id: "g1", role: "assistant", text: "Hello!", status: "complete" }, { id: "u1", role: "user", text: "Hi", status: "complete" }] });
    expect(stored.messages.map((m) => m.id)).toEqual(["g1", "u1"]);
  });

  it("stops saying writing once the reply's text has all arrived, while its turn still runs", () => {
    const state = run([
      { type: "user_message", id: "u1", text: "Hi", voiceExpected: true, at },
      { type: "reply_started", id: "a1", at },
      { type: "reply_text", id: "a1", delta: "Hello" },
      { type: "reply_written", id: "a1" },
    ]);
    expect(state.streamingId).toBeNull();
    expect(state.messages[1].writing).toBe(false);
    expect(state.running).toBe(true); // its audio may still be on its way
  });

  it("announces the full reply without its speech pauses", () => {
    const state = run([
      { type: "reply_started", id: "a1", at },
      { type: "reply_full_text", id: "a1", text: 'One.<break time="1s"/> Two.', announce: true },
    ]);
    expect(state.announcement).toBe("One. Two.");
  });

  it("shows a problem once however often it happens, and keeps notices across a reset", () => {
    let state = run([
      { type: "notice", code: "rate_limited", message: "Slow down" },
      { type: "notice", code: "rate_limited", message: "Slow down" },
      { type: "notice", code: "network", message: "Offline" },
    ]);
    expect(state.notices.map((n) => n.code)).toEqual(["rate_limited", "network"]);
    state = reducer(state, { type: "dismiss", id: state.notices[0].id });
    state = reducer(state, { type: "reset", conversationId: null });
    expect(state.notices.map((n) => n.code)).toEqual(["network"]);
    expect(reducer(state, { type: "dismiss_code", code: "network" }).notices).toEqual([]);
  });

  it("ends the running turn on a disconnect", () => {
    const state = run([
      { type: "user_message", id: "u1", text: "Hi", voiceExpected: true, at },
      { type: "reply_started", id: "a1", at },
      { type: "queued", messageId: "a1", position: 1 },
      { type: "disconnected" },
    ]);
    expect(state).toMatchObject({ running: false, streamingId: null, queued: null, voiceExpected: false });
  });

  it("keeps a stored reply's word timings in display order", () => {
    const state = reducer(initialState("c", 4000), {
      type: "history",
      older: false,
      messages: [{ id: "a1", role: "assistant", text: "Hello world", status: "complete", words: [[6, 11, 300, 600], [0, 5, 0, 280]] }],
    });
    expect(state.messages[0].words).toEqual([
      [0, 5, 0, 280],
      [6, 11, 300, 600],
    ]);
  });
});
