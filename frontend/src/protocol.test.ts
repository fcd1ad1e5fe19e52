import { initialState, reducer, type ChatState, type ServerFrame } from "./protocol";

const run = (frames: ServerFrame[], state: ChatState = initialState(null, 4000)) =>
  frames.reduce((s, frame) => reducer(s, { type: "server", frame }), state);

const turn: ServerFrame[] = [
  { type: "conversation_initiation_metadata", conversation_initiation_metadata_event: { conversation_id: "c1", agent_output_audio_format: "pcm_24000", max_message_chars: 500 } },
  { type: "user_transcript", user_transcription_event: { user_transcript: "Hi", event_id: 2, message_id: "u1" } },
  { type: "agent_chat_response_part", text_response_part: { text: "", type: "start", event_id: 3, message_id: "a1" } },
  { type: "agent_chat_response_part", text_response_part: { text: "Hello ", type: "delta", event_id: 4, message_id: "a1" } },
  { type: "audio", audio_event: { audio_base_64: "AAA=", event_id: 5 } },
  { type: "agent_chat_response_part", text_response_part: { text: "there.", type: "delta", event_id: 6, message_id: "a1" } },
  { type: "agent_chat_response_part", text_response_part: { text: "", type: "stop", event_id: 7, message_id: "a1" } },
];

describe("the protocol reducer", () => {
  it("builds the transcript as the turn streams", () => {
    const state = run(turn);
    expect(state.conversationId).toBe("c1");
    expect(state.audioFormat).toBe("pcm_24000");
    expect(state.maxChars).toBe(500);
    expect(state.messages.map((m) => [m.role, m.text, m.status])).toEqual([
      ["user", "Hi", "complete"],
      ["assistant", "Hello there.", "streaming"],
    ]);
    expect(state.running).toBe(true);
  });

  it("finishes a turn with its status and audio url and announces the reply", () => {
    const state = run([
      ...turn,
      { type: "agent_response", agent_response_event: { agent_response: "Hello there.", event_id: 8, message_id: "a1" } },
      { type: "agent_response_complete", agent_response_complete_event: { event_id: 9, message_id: "a1", status: "complete", audio_status: "complete", audio_url: "/api/messages/a1/audio/" } },
    ]);
    expect(state.messages[1]).toMatchObject({ status: "complete", audio_url: "/api/messages/a1/audio/" });
    expect(state.running).toBe(false);
    expect(state.announcement).toBe("Hello there.");
  });

  it("marks an interrupted reply and keeps the corrected text", () => {
    const state = run([
      ...turn,
      { type: "interruption", interruption_event: { event_id: 8, message_id: "a1" } },
      { type: "agent_response_correction", agent_response_correction_event: { original_agent_response: "Hello there.", corrected_agent_response: "Hello", event_id: 9, message_id: "a1" } },
    ]);
    expect(state.messages[1]).toMatchObject({ status: "interrupted", text: "Hello" });
    expect(state.streamingId).toBeNull();
  });

  it("shows errors as dismissible notices", () => {
    let state = run([{ type: "error", error_event: { code: "tts_unavailable", message: "Key rejected" } }]);
    expect(state.notices).toHaveLength(1);
    state = reducer(state, { type: "dismiss", id: state.notices[0].id });
    expect(state.notices).toHaveLength(0);
  });

  it("ignores pings in state and merges history without duplicates", () => {
    const before = run(turn);
    expect(run([{ type: "ping", ping_event: { event_id: 9, ping_ms: 3 } }], before)).toBe(before);
    const merged = reducer(before, { type: "history", older: true, messages: [{ id: "u0", role: "user", text: "Earlier", status: "complete" }, { id: "u1", role: "user", text: "Hi", status: "complete" }] });
    expect(merged.messages.map((m) => m.id)).toEqual(["u0", "u1", "a1"]);
  });
});
