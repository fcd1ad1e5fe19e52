import { initialState, reducer, type ChatState, type ServerFrame } from "./protocol";

const run = (frames: ServerFrame[], state: ChatState = initialState(null, 4000)) =>
  frames.reduce((s, frame) => reducer(s, { type: "server", frame }), state);

const metadata: ServerFrame = {
  type: "conversation_initiation_metadata",
  conversation_initiation_metadata_event: {
    conversation_id: "c1",
    agent_output_audio_format: "pcm_24000",
    user_input_audio_format: "none",
    agent_id: "agent-1",
    max_message_chars: 500,
    protocol_version: 1,
  },
};

const turn: ServerFrame[] = [
  metadata,
  { type: "user_transcript", user_transcription_event: { user_transcript: "Hi", event_id: 2, message_id: "u1" } },
  { type: "agent_chat_response_part", text_response_part: { text: "", type: "start", event_id: 3, message_id: "a1" } },
  { type: "agent_chat_response_part", text_response_part: { text: "Hello ", type: "delta", event_id: 4, message_id: "a1" } },
  { type: "audio", audio_event: { audio_base_64: "AAA=", event_id: 5 } },
  { type: "agent_chat_response_part", text_response_part: { text: "there.", type: "delta", event_id: 6, message_id: "a1" } },
  { type: "agent_chat_response_part", text_response_part: { text: "", type: "stop", event_id: 7, message_id: "a1" } },
];

const complete = (status: string, audioStatus: string, audioUrl: string | null): ServerFrame => ({
  type: "agent_response_complete",
  agent_response_complete_event: { event_id: 20, message_id: "a1", status, audio_status: audioStatus, audio_url: audioUrl, metrics: { llm_first_token_ms: 12 } },
});

describe("the protocol reducer", () => {
  it("takes the conversation, audio format and message limit from conversation_initiation_metadata", () => {
    const state = run([metadata]);
    expect(state).toMatchObject({ conversationId: "c1", audioFormat: "pcm_24000", maxChars: 500, running: false });
  });

  it("adds the user's message on user_transcript and marks a turn running", () => {
    const state = run(turn.slice(0, 2));
    expect(state.messages).toEqual([{ id: "u1", role: "user", text: "Hi", status: "complete" }]);
    expect(state.running).toBe(true);
  });

  it("builds the reply from agent_chat_response_part start, deltas and stop", () => {
    const state = run(turn);
    expect(state.messages.map((m) => [m.role, m.text, m.status])).toEqual([
      ["user", "Hi", "complete"],
      ["assistant", "Hello there.", "streaming"],
    ]);
    expect(state.streamingId).toBe("a1");
  });

  it("leaves the state alone on audio and ping (the player and the socket handle them)", () => {
    const before = run(turn.slice(0, 4));
    expect(run([turn[4]], before)).toBe(before);
    expect(run([{ type: "ping", ping_event: { event_id: 9, ping_ms: 3 } }], before)).toBe(before);
  });

  it("takes the full text from agent_response and announces it", () => {
    const state = run([...turn, { type: "agent_response", agent_response_event: { agent_response: "Hello there!", event_id: 8, message_id: "a1" } }]);
    expect(state.messages[1].text).toBe("Hello there!");
    expect(state.announcement).toBe("Hello there!");
  });

  it("finishes a turn on agent_response_complete with its status and audio url", () => {
    const state = run([...turn, complete("complete", "complete", "/api/messages/a1/audio/")]);
    expect(state.messages[1]).toMatchObject({ status: "complete", audio_status: "complete", audio_url: "/api/messages/a1/audio/" });
    expect(state.running).toBe(false);
    expect(state.streamingId).toBeNull();
  });

  it("records a failed turn and failed audio", () => {
    const state = run([...turn, complete("failed", "failed", null)]);
    expect(state.messages[1]).toMatchObject({ status: "failed", audio_status: "failed", audio_url: null });
  });

  it("marks the reply interrupted on interruption and keeps the corrected text", () => {
    const state = run([
      ...turn,
      { type: "interruption", interruption_event: { event_id: 8, message_id: "a1" } },
      { type: "agent_response_correction", agent_response_correction_event: { original_agent_response: "Hello there.", corrected_agent_response: "Hello", event_id: 9, message_id: "a1" } },
      complete("interrupted", "partial", "/api/messages/a1/audio/"),
    ]);
    expect(state.messages[1]).toMatchObject({ status: "interrupted", text: "Hello", audio_status: "partial" });
    expect(state.streamingId).toBeNull();
    expect(state.running).toBe(false);
  });

  it("ignores parts and completions of messages it does not show", () => {
    const before = run(turn);
    const after = run([{ type: "agent_chat_response_part", text_response_part: { text: "x", type: "delta", event_id: 9, message_id: "zz" } }], before);
    expect(after.messages).toEqual(before.messages);
  });

  it("shows error events as dismissible notices with the server's message", () => {
    let state = run([{ type: "error", error_event: { code: "tts_unavailable", message: "Key rejected" } }]);
    expect(state.notices).toMatchObject([{ code: "tts_unavailable", message: "Key rejected" }]);
    state = reducer(state, { type: "notice", code: "network", message: "Offline" });
    state = reducer(state, { type: "dismiss", id: state.notices[0].id });
    expect(state.notices.map((n) => n.code)).toEqual(["network"]);
  });

  it("merges history pages without duplicates and takes the server's fields for known messages", () => {
    const before = run(turn);
    const older = reducer(before, { type: "history", older: true, messages: [{ id: "u0", role: "user", text: "Earlier", status: "complete" }, { id: "u1", role: "user", text: "Hi", status: "complete" }] });
    expect(older.messages.map((m) => m.id)).toEqual(["u0", "u1", "a1"]);
    const resync = reducer(older, { type: "history", older: false, messages: [{ id: "a1", role: "assistant", text: "Hello there.", status: "interrupted", audio_url: "/x" }] });
    expect(resync.messages.map((m) => m.id)).toEqual(["u0", "u1", "a1"]);
    expect(resync.messages[2]).toMatchObject({ status: "interrupted", audio_url: "/x" });
  });

  it("ends the running turn on a disconnect and keeps notices across a reset", () => {
    let state = run([...turn, { type: "error", error_event: { code: "rate_limited", message: "Slow down" } }]);
    state = reducer(state, { type: "disconnected" });
    expect(state).toMatchObject({ running: false, streamingId: null });
    state = reducer(state, { type: "reset", conversationId: null });
    expect(state.messages).toEqual([]);
    expect(state.notices).toHaveLength(1);
    expect(state.maxChars).toBe(500);
  });
});
