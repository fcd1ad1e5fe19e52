import { GREETING_ID, initialState, reducer, type ChatState } from "./chat";
import { Conversation, type ConversationEvents } from "./conversation";
import { counters } from "./counters";
import { indicator } from "./indicator";
import { Player } from "./player";
import { FakeAudio } from "./testing/fakeAudio";
import { FakeWebSocket } from "./testing/fakeSocket";
import { binaryAudio, frames } from "./testing/frames";

interface Options {
  speak?: boolean;
  /** The page made its audio context while loading (false: the first Send makes it). */
  prepared?: boolean;
  conversationId?: string | null;
}

const open: Conversation[] = [];

async function harness({ speak = true, prepared = true, conversationId = null }: Options = {}) {
  Object.assign(counters, { samplesQueued: 0, samplesPlayed: 0, underruns: 0, state: "locked", firstAudibleMs: null, turnUnderruns: 0, turnPlayedMs: 0 });
  const audio = new FakeAudio();
  audio.install();
  FakeWebSocket.install();
  const player = new Player("/static/voicechat/pcm-worklet.js", 80);
  if (prepared) player.prepare(24000);
  await audio.settle();
  let state: ChatState = initialState(conversationId, 4000);
  let autoplay = speak;
  const events: { [K in keyof ConversationEvents]: ReturnType<typeof vi.fn> } = {
    onConversation: vi.fn(),
    onResync: vi.fn(),
    onRefused: vi.fn(),
    onSessionEnded: vi.fn(),
    onStatus: vi.fn(),
    onActivity: vi.fn(),
    onEnded: vi.fn(),
    onReplayStored: vi.fn(),
    onVoiceLater: vi.fn(),
    onVoiceRefused: vi.fn(),
  };
  const conversation = new Conversation({
    wsPath: "/v1/convai/conversation",
    player,
    dispatch: (action) => (state = reducer(state, action)),
    state: () => state,
    speak: () => autoplay,
    events: events as unknown as ConversationEvents,
  });
  open.push(conversation);
  conversation.open(conversationId, "agent-1");
  const server = FakeWebSocket.last();
  server.serverOpens();
  server.serverSends(frames.metadata(conversationId ?? "announced-1"));
  return {
    audio,
    player,
    conversation,
    events,
    server,
    get state() {
      return state;
    },
    setSpeak(on: boolean) {
      autoplay = on;
      conversation.setSpeak(on);
    },
    /** What the toolbar would say now. */
    indicator: () => indicator(state, player.nowPlaying(), autoplay, null),
  };
}

type Harness = Awaited<ReturnType<typeof harness>>;

/** The user sends `text`; the server answers with a reply `replyId` of `audioMs` of speech in 100 ms frames. */
async function turn(h: Harness, replyId: string, { audioMs = 600, gapMs = 0, text = "Hello." } = {}) {
  h.conversation.send(text);
  await h.audio.settle();
  h.server.serverSends(frames.transcript(`u-${replyId}`, text));
  h.server.serverSends(frames.start(replyId));
  h.server.serverSends(frames.delta(replyId, "Hi there."));
  h.audio.run(gapMs);
  for (let sent = 0; sent < audioMs; sent += 100) h.server.serverSends(frames.audio(100));
  h.server.serverSends(frames.stop(replyId));
  h.server.serverSends(frames.response(replyId, "Hi there."));
}

afterEach(() => {
  open.splice(0).forEach((conversation) => conversation.close()); // no reconnect timer outlives its test
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
  vi.useRealTimers();
});

describe("a conversation's frames", () => {
  it("starts every connection with conversation_initiation_client_data: binary audio and the auto-play setting", async () => {
    const h = await harness({ speak: false });
    expect(h.server.sent[0]).toEqual({ type: "conversation_initiation_client_data", voicechat: { binary_audio: true, speak: false } });
    expect(h.server.binaryType).toBe("arraybuffer");
  });

  it("builds the user's message and the streamed reply, then ends the turn on agent_response_complete", async () => {
    const h = await harness();
    await turn(h, "a1");
    expect(h.state.messages.map((m) => [m.role, m.text, m.status])).toEqual([
      ["user", "Hello.", "complete"],
      ["assistant", "Hi there.", "streaming"],
    ]);
    expect(h.state.running).toBe(true);
    expect(h.state.announcement).toBe("Hi there.");
    h.server.serverSends(frames.complete("a1", { duration: 600 }));
    expect(h.state.messages[1]).toMatchObject({ status: "complete", audio_status: "complete", audio_url: "/api/messages/a1/audio/", audio_duration_ms: 600 });
    expect(h.state.running).toBe(false);
  });

  it("marks an interrupted reply, keeps its corrected text and silences its audio", async () => {
    const h = await harness();
    await turn(h, "a1", { audioMs: 2000 });
    h.audio.run(300);
    expect(counters.state).toBe("playing");
    h.server.serverSends(frames.interruption("a1"));
    h.server.serverSends(frames.correction("a1", "Hi there.", "Hi"));
    h.server.serverSends(frames.audio(100)); // late audio of the stopped turn
    h.server.serverSends(frames.complete("a1", { status: "interrupted", audio_status: "partial" }));
    h.audio.run(100);
    expect(counters.state).toBe("idle");
    expect(h.state.messages[1]).toMatchObject({ status: "interrupted", text: "Hi", audio_status: "partial" });
  });

  it("reports what was heard once the reply has played out", async () => {
    const h = await harness();
    await turn(h, "a1", { gapMs: 200 });
    h.server.serverSends(frames.complete("a1"));
    expect(h.server.sentOf("playback_report")).toEqual([]);
    h.audio.run(1000);
    await h.audio.settle();
    const [report] = h.server.sentOf("playback_report");
    expect(report).toMatchObject({ message_id: "a1", underruns: 0 });
    expect(report.first_audible_ms).toBeGreaterThanOrEqual(200); // the reply's delay after the Send
    expect(report.first_audible_ms).toBeLessThan(200 + 20);
  });

  it("reports how far the listener got in a reply cut short by Stop", async () => {
    const h = await harness();
    await turn(h, "a1", { audioMs: 3000 });
    h.audio.run(1000);
    h.conversation.stop(true);
    expect(h.server.sentOf("interrupt")).toHaveLength(1);
    h.server.serverSends(frames.interruption("a1"));
    h.server.serverSends(frames.complete("a1", { status: "interrupted", audio_status: "partial" }));
    await h.audio.settle();
    const [report] = h.server.sentOf("playback_report");
    expect(report.message_id).toBe("a1");
    expect(report.heard_ms).toBeGreaterThan(950); // the second that was heard, to within a render quantum or two
    expect(report.heard_ms).toBeLessThan(1050);
  });

  it("reports the reply a new message cut short, with how much of it was heard", async () => {
    const h = await harness();
    await turn(h, "a1", { audioMs: 3000 });
    h.audio.run(700);
    await turn(h, "a2", { text: "Next." }); // sent over the first reply
    h.server.serverSends(frames.complete("a1", { status: "interrupted", audio_status: "partial" })); // late, as the server sends it
    await h.audio.settle();
    const reports = h.server.sentOf("playback_report");
    expect(reports.map((r) => r.message_id)).toEqual(["a1"]); // at once, not after the new reply plays out
    expect(reports[0].heard_ms).toBeGreaterThan(500);
    h.server.serverSends(frames.complete("a2"));
    h.audio.run(1500);
    await h.audio.settle();
    expect(h.server.sentOf("playback_report").map((r) => [r.message_id, "heard_ms" in r])).toEqual([
      ["a1", true],
      ["a2", false], // played to its end: nothing to refine
    ]);
  });

  it("counts the first turn's first sound from the Send, including making the audio context in it", async () => {
    const h = await harness({ prepared: false });
    h.audio.creationMs = 90; // a browser that only makes the context inside the click
    h.audio.resumeMs = 30;
    await turn(h, "a1", { gapMs: 100 });
    h.audio.run(400);
    // Making and resuming the context (120 ms) and the reply's delay (100 ms) all come after the Send.
    expect(counters.firstAudibleMs).toBeGreaterThanOrEqual(220);
    expect(counters.firstAudibleMs).toBeLessThan(220 + 20);
  });

  it("never counts the previous reply's fade-out as the new reply's first sound", async () => {
    const h = await harness();
    await turn(h, "a1", { audioMs: 3000 });
    h.audio.run(500); // the first reply is playing when the user sends again
    await turn(h, "a2", { gapMs: 400, text: "Another." });
    h.audio.run(600);
    expect(counters.firstAudibleMs).toBeGreaterThanOrEqual(400);
    expect(counters.firstAudibleMs).toBeLessThan(400 + 20);
  });

  it("drops audio while auto-play is off, and tells the server to skip speech when it is switched off", async () => {
    const h = await harness();
    h.setSpeak(false);
    expect(h.server.sentOf("settings")).toEqual([{ type: "settings", speak: false }]);
    await turn(h, "a1");
    h.audio.run(500);
    expect(counters.samplesQueued).toBe(0);
    expect(h.indicator()).toEqual({ writing: false, voice: null, queuePosition: null }); // never "speaking"
    h.setSpeak(true);
    expect(h.server.sentOf("settings").at(-1)).toEqual({ type: "settings", speak: true });
  });

  it("asks for the voice of a reply on Play, plays what streams back and keeps the stored audio", async () => {
    const h = await harness({ speak: false });
    await turn(h, "a1");
    h.server.serverSends(frames.complete("a1", { audio_url: null }));
    expect(h.state.messages[1].audio_url).toBeFalsy();
    h.conversation.speak("a1");
    expect(h.server.sentOf("speak")).toEqual([{ type: "speak", message_id: "a1" }]);
    expect(h.state.messages[1].synthesizing).toBe(true);
    expect(h.indicator().voice).toBe("waiting");
    h.server.serverSends(frames.audio(500));
    h.server.serverSends(frames.complete("a1"));
    h.audio.run(200);
    expect(h.player.nowPlaying()).toMatchObject({ label: "a1", audible: true });
    expect(h.indicator().voice).toBe("speaking");
    expect(h.state.messages[1]).toMatchObject({ synthesizing: false, audio_url: "/api/messages/a1/audio/" });
    expect(h.events.onReplayStored).not.toHaveBeenCalled();
  });

  it("replays from storage when Play finds the reply already has audio", async () => {
    const h = await harness({ speak: false });
    await turn(h, "a1");
    h.server.serverSends(frames.complete("a1", { audio_url: null }));
    h.conversation.speak("a1");
    h.server.serverSends(frames.complete("a1")); // stored meanwhile: no audio frames, just its address
    expect(h.events.onReplayStored).toHaveBeenCalledWith("a1", "/api/messages/a1/audio/");
  });

  it("shows and plays the greeting of a new conversation, without starting a turn", async () => {
    const h = await harness();
    await h.player.unlock(); // the click on "New conversation" lets it sound
    h.server.serverSends(frames.response(null, "Hello! Ask me anything.", true));
    h.server.serverSends(frames.audio(400));
    h.server.serverSends(frames.complete(null, { greeting: true, audio_url: "/api/agents/x/greeting/audio/" }));
    h.audio.run(200);
    expect(h.state.messages).toEqual([
      expect.objectContaining({ id: GREETING_ID, role: "assistant", text: "Hello! Ask me anything.", greeting: true, audio_url: "/api/agents/x/greeting/audio/" }),
    ]);
    expect(h.state.running).toBe(false);
    expect(h.player.nowPlaying()).toMatchObject({ label: GREETING_ID, audible: true });
    h.audio.run(1000);
    expect(h.server.sentOf("playback_report")).toEqual([]); // nobody pressed Send: nothing to measure
  });

  it("shows the greeting without playing it when auto-play is off", async () => {
    const h = await harness({ speak: false });
    h.server.serverSends(frames.response(null, "Hello!", true));
    h.server.serverSends(frames.audio(400));
    h.audio.run(300);
    expect(h.state.messages[0].text).toBe("Hello!");
    expect(counters.samplesQueued).toBe(0);
  });

  it("plays binary audio frames and takes their words from audio_alignment", async () => {
    const h = await harness();
    h.conversation.send("Hi");
    h.server.serverSends(frames.transcript("u1", "Hi"));
    h.server.serverSends(frames.start("a1"));
    h.server.serverSends(frames.delta("a1", "Hello world"));
    h.server.serverSends(frames.alignment("a1", [[6, 11, 300, 600]]));
    h.server.serverSends(frames.alignment(null, [[0, 5, 0, 280]])); // words of the current reply
    h.server.serverSendsBinary(binaryAudio(7, new Uint8Array(24000 * 2).fill(16)));
    h.audio.run(300);
    expect(counters.samplesQueued).toBe(24000);
    expect(h.state.messages[1].words).toEqual([
      [0, 5, 0, 280],
      [6, 11, 300, 600],
    ]);
  });

  it("collects word timings from audio frames, and takes the complete set from agent_response_complete", async () => {
    const h = await harness();
    h.conversation.send("Hi");
    h.server.serverSends(frames.transcript("u1", "Hi"));
    h.server.serverSends(frames.start("a1"));
    h.server.serverSends(frames.audio(100, [[0, 5, 0, 90]]));
    h.server.serverSends(frames.audio(100, [[6, 11, 100, 190]]));
    expect(h.state.messages[1].words).toHaveLength(2);
    h.server.serverSends(frames.complete("a1", { words: [[6, 11, 100, 190], [0, 5, 0, 90], [12, 13, 200, 250]] }));
    expect(h.state.messages[1].words).toEqual([
      [0, 5, 0, 90],
      [6, 11, 100, 190],
      [12, 13, 200, 250],
    ]);
  });

  it("says queued while the turn's voice waits for a slot, then speaking once it is heard", async () => {
    const h = await harness();
    h.conversation.send("Hi");
    h.server.serverSends(frames.transcript("u1", "Hi"));
    expect(h.indicator().voice).toBe("waiting");
    h.server.serverSends(frames.start("a1"));
    h.server.serverSends(frames.queued("a1", 2));
    expect(h.indicator()).toEqual({ writing: true, voice: "queued", queuePosition: 2 });
    h.server.serverSends(frames.audio(40));
    h.audio.run(50); // less than the start-up buffer: not heard yet
    expect(h.indicator().voice).toBe("queued");
    h.server.serverSends(frames.audio(500));
    h.audio.run(100);
    expect(h.indicator().voice).toBe("speaking");
  });

  it("keeps the speech allowance from the metadata and each budget frame", async () => {
    const h = await harness();
    const budget = { remaining_chars: 900, limit_chars: 1000, resets_at: "2030-01-01T00:00:00Z", site_exhausted: false };
    h.server.serverSends(frames.metadata("c1", { speech_budget: budget }));
    expect(h.state.budget).toMatchObject(budget);
    h.server.serverSends(frames.budget({ ...budget, remaining_chars: 100 }));
    expect(h.state.budget?.remaining_chars).toBe(100);
    h.server.serverSends(frames.error("budget_exhausted")); // too little left for the next reply
    h.server.serverSends(frames.budget({ ...budget, remaining_chars: 40 }));
    expect(h.state.budget).toMatchObject({ remaining_chars: 40, exhausted: true });
    expect(h.state.voiceExpected).toBe(false);
    h.server.serverSends(frames.budget({ ...budget, remaining_chars: 1000 })); // a new day
    expect(h.state.budget?.exhausted).toBe(false);
    h.server.serverSends(frames.error("site_budget_exhausted"));
    expect(h.state.budget?.site_exhausted).toBe(true);
  });
});

describe("refusals and endings", () => {
  it("gives a refused message back to the composer and says why", async () => {
    const h = await harness();
    h.conversation.send("x".repeat(5000));
    h.server.serverSends(frames.error("message_too_long"));
    expect(h.events.onRefused).toHaveBeenCalledWith("x".repeat(5000));
    expect(h.state.notices[0]).toMatchObject({ code: "message_too_long" });
    expect(h.state.notices[0].message).toContain("4,000 characters");
  });

  it("does not give back a message the server saved, whatever fails after", async () => {
    const h = await harness();
    await turn(h, "a1");
    h.server.serverSends(frames.error("tts_quota_exceeded"));
    expect(h.events.onRefused).not.toHaveBeenCalled();
    expect(h.state.voiceExpected).toBe(false); // the voice will not come: the toolbar stops waiting for it
  });

  it("gives the message back when the connection drops before the server saved it", async () => {
    const h = await harness();
    h.conversation.send("lost?");
    h.server.serverCloses(1006);
    expect(h.events.onRefused).toHaveBeenCalledWith("lost?");
  });

  it("goes to the login page when the session ended (close 4001) and does not reconnect", async () => {
    vi.useFakeTimers();
    const h = await harness();
    h.server.serverSends(frames.error("session_ended"));
    h.server.serverCloses(4001);
    expect(h.events.onSessionEnded).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(60000);
    expect(FakeWebSocket.all).toHaveLength(1);
  });

  it("offers to reconnect after too_many_connections (close 4008) instead of looping", async () => {
    vi.useFakeTimers();
    const h = await harness();
    h.server.serverSends(frames.error("too_many_connections"));
    h.server.serverCloses(4008);
    vi.advanceTimersByTime(60000);
    expect(FakeWebSocket.all).toHaveLength(1);
    expect(h.state.notices).toEqual([expect.objectContaining({ code: "too_many_connections", action: "reconnect" })]);
    h.conversation.reconnect();
    expect(FakeWebSocket.all).toHaveLength(2);
    expect(h.state.notices).toEqual([]);
  });
});

describe("the conversation's identity", () => {
  it("adopts the id announced for a new conversation once its first message is saved", async () => {
    const h = await harness();
    expect(h.events.onConversation).not.toHaveBeenCalled(); // nothing exists before the first message
    await turn(h, "a1");
    expect(h.events.onConversation).toHaveBeenCalledWith("announced-1");
    expect(h.state.conversationId).toBe("announced-1");
  });

  it("reconnects a new conversation without its announced id until it exists, and with it after", async () => {
    vi.useFakeTimers();
    const h = await harness();
    h.server.serverCloses(1006);
    vi.advanceTimersByTime(1000);
    expect(FakeWebSocket.last().url).toBe("wss://chat.example/v1/convai/conversation?agent_id=agent-1");
    FakeWebSocket.last().serverOpens();
    FakeWebSocket.last().serverSends(frames.metadata(null)); // a server that creates the row later names it later
    const server = FakeWebSocket.last();
    h.conversation.send("Hi");
    server.serverSends(frames.transcript("u1", "Hi", "created-9"));
    expect(h.events.onConversation).toHaveBeenCalledWith("created-9");
    server.serverCloses(1006);
    vi.advanceTimersByTime(1000);
    expect(FakeWebSocket.last().url).toBe("wss://chat.example/v1/convai/conversation?conversation_id=created-9");
  });

  it("resyncs an existing conversation after a reconnect", async () => {
    vi.useFakeTimers();
    const h = await harness({ conversationId: "c-1" });
    h.server.serverCloses(1006);
    vi.advanceTimersByTime(1000);
    FakeWebSocket.last().serverOpens();
    FakeWebSocket.last().serverSends(frames.metadata("c-1"));
    expect(h.events.onResync).toHaveBeenCalledWith("c-1");
  });

  it("shows another tab's turn without taking its place in the player", async () => {
    const h = await harness({ conversationId: "c-1" });
    h.server.serverSends(frames.transcript("u9", "from the other tab"));
    h.server.serverSends(frames.start("a9"));
    h.server.serverSends(frames.audio(300));
    h.audio.run(300);
    expect(h.state.messages.map((m) => m.id)).toEqual(["u9", "a9"]);
    expect(counters.samplesQueued).toBe(0);
  });
});

describe("a voice picked for the conversation", () => {
  const picked = (voice: string) => ({
    type: "conversation_initiation_client_data",
    conversation_config_override: { tts: { voice_id: voice } },
    voicechat: { binary_audio: true, speak: true },
  });

  it("goes to a stored conversation by PATCH, never on the socket", async () => {
    const h = await harness({ conversationId: "c-1" });
    expect(h.conversation.pickVoice("rachel")).toEqual({ via: "patch", conversationId: "c-1" });
    expect(h.server.sentOf("conversation_initiation_client_data")).toHaveLength(1); // only the first frame
  });

  it("goes on the socket of a new conversation, again on each change and on every reconnect until it exists", async () => {
    vi.useFakeTimers();
    const h = await harness();
    expect(h.conversation.pickVoice("rachel")).toEqual({ via: "socket" });
    expect(h.conversation.pickVoice("sarah")).toEqual({ via: "socket" });
    expect(h.server.sentOf("conversation_initiation_client_data").slice(1)).toEqual([picked("rachel"), picked("sarah")]);
    h.server.serverCloses(1006);
    vi.advanceTimersByTime(1000);
    FakeWebSocket.last().serverOpens(); // the server forgets an unsaved conversation: the pick is sent again
    expect(FakeWebSocket.last().sent[0]).toEqual(picked("sarah"));

    const server = FakeWebSocket.last();
    h.conversation.send("Hi");
    server.serverSends(frames.transcript("u1", "Hi", "created-9"));
    expect(h.conversation.pickVoice("george")).toEqual({ via: "patch", conversationId: "created-9" });
    server.serverCloses(1006);
    vi.advanceTimersByTime(1000);
    FakeWebSocket.last().serverOpens(); // the conversation has the voice now: no override on reconnect
    expect(FakeWebSocket.last().sent[0]).toEqual({ type: "conversation_initiation_client_data", voicechat: { binary_audio: true, speak: true } });
  });

  it("waits while the first message is creating the conversation, then has it PATCHed", async () => {
    const h = await harness();
    h.conversation.send("Hi");
    expect(h.conversation.pickVoice("rachel")).toEqual({ via: "later" });
    expect(h.server.sentOf("conversation_initiation_client_data")).toHaveLength(1); // not racing the row's insert
    h.server.serverSends(frames.transcript("u1", "Hi", "created-9"));
    expect(h.events.onVoiceLater).toHaveBeenCalledWith("created-9", "rachel");
  });

  it("goes on the socket after all when that first message was refused", async () => {
    const h = await harness();
    h.conversation.send("Hi");
    h.conversation.pickVoice("rachel");
    h.server.serverSends(frames.error("rate_limited"));
    expect(h.events.onRefused).toHaveBeenCalledWith("Hi");
    expect(h.server.sentOf("conversation_initiation_client_data").at(-1)).toEqual(picked("rachel"));
    expect(h.events.onVoiceLater).not.toHaveBeenCalled();
  });

  it("is dropped when the server refuses it, so the reconnect is not refused again", async () => {
    vi.useFakeTimers();
    const h = await harness();
    h.conversation.pickVoice("withdrawn");
    h.server.serverSends(frames.error("override_not_allowed"));
    expect(h.events.onVoiceRefused).toHaveBeenCalledOnce();
    expect(h.state.notices).toEqual([]); // the picker says which voice, not a generic sentence
    h.server.serverCloses(4003);
    vi.advanceTimersByTime(1000);
    FakeWebSocket.last().serverOpens();
    expect(FakeWebSocket.last().sent[0]).toEqual({ type: "conversation_initiation_client_data", voicechat: { binary_audio: true, speak: true } });
  });

  it("is forgotten when another conversation opens", async () => {
    const h = await harness();
    h.conversation.pickVoice("rachel");
    h.conversation.open(null, "agent-2");
    FakeWebSocket.last().serverOpens();
    expect(FakeWebSocket.last().sent[0]).toEqual({ type: "conversation_initiation_client_data", voicechat: { binary_audio: true, speak: true } });
  });
});
