import type { Incoming, ServerFrame } from "./protocol";
import { backoffMs, ConversationSocket, type EndReason } from "./socket";
import { FakeWebSocket } from "./testing/fakeSocket";
import { binaryAudio } from "./testing/frames";

const last = () => FakeWebSocket.all[FakeWebSocket.all.length - 1];
const metadata = (id: string): ServerFrame => ({ type: "conversation_initiation_metadata", conversation_initiation_metadata_event: { conversation_id: id, agent_output_audio_format: "pcm_24000" } });

describe("ConversationSocket", () => {
  beforeEach(() => {
    FakeWebSocket.install();
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  const open = (conversationId: string | null, agentId: string | null = null) => {
    const frames: Incoming[] = [];
    const statuses: string[] = [];
    const ended: EndReason[] = [];
    const refused = vi.fn();
    const socket = new ConversationSocket("/v1/convai/conversation", conversationId, agentId, {
      onFrame: (f) => frames.push(f),
      onStatus: (s) => statuses.push(s),
      onRefused: refused,
      onEnded: (reason) => ended.push(reason),
      initiation: () => ({ type: "conversation_initiation_client_data", voicechat: { binary_audio: true, speak: true } }),
    });
    return { socket, frames, statuses, refused, ended };
  };

  it("opens a new conversation with the chosen agent, an existing one by its id", () => {
    open(null, "agent-7");
    expect(last().url).toBe("wss://chat.example/v1/convai/conversation?agent_id=agent-7");
    open("c-1", "agent-7");
    expect(last().url).toBe("wss://chat.example/v1/convai/conversation?conversation_id=c-1");
  });

  it("answers a ping with a pong carrying its event_id", () => {
    const { frames } = open("c-1");
    last().serverOpens();
    last().serverSends({ type: "ping", ping_event: { event_id: 42, ping_ms: null } });
    expect(last().sentOf("pong")).toEqual([{ type: "pong", event_id: 42 }]);
    expect(frames).toHaveLength(1);
  });

  it("holds messages sent before the first open and sends them in order once open", () => {
    const { socket } = open(null);
    expect(socket.send({ type: "user_message", text: "one" })).toBe(true);
    expect(socket.send({ type: "user_message", text: "two" })).toBe(true);
    expect(last().sent).toEqual([]);
    last().serverOpens();
    expect(last().sent.map((f) => f.type)).toEqual(["conversation_initiation_client_data", "user_message", "user_message"]);
    expect(last().sentOf("user_message")).toEqual([{ type: "user_message", text: "one" }, { type: "user_message", text: "two" }]);
  });

  it("reconnects with growing backoff, to the conversation it was told exists", () => {
    const { socket, statuses } = open(null, "agent-7");
    last().serverOpens();
    last().serverSends(metadata("created-1"));
    socket.conversationId = "created-1";
    last().serverCloses();
    expect(statuses).toEqual(["connecting", "open", "closed"]);
    expect(FakeWebSocket.all).toHaveLength(1);
    vi.advanceTimersByTime(600);
    expect(last().url).toBe("wss://chat.example/v1/convai/conversation?conversation_id=created-1");
    last().serverCloses();
    vi.advanceTimersByTime(700);
    expect(FakeWebSocket.all).toHaveLength(2); // the second wait is about twice as long
    vi.advanceTimersByTime(600);
    expect(FakeWebSocket.all).toHaveLength(3);
  });

  it("sends conversation_initiation_client_data first on every connection", () => {
    open("c-1");
    last().serverOpens();
    last().serverCloses();
    vi.advanceTimersByTime(1000);
    last().serverOpens();
    expect(FakeWebSocket.all.map((ws) => ws.sent[0]?.type)).toEqual(["conversation_initiation_client_data", "conversation_initiation_client_data"]);
  });

  it("decodes binary audio frames and ignores binary kinds it does not know", () => {
    const { frames } = open("c-1");
    last().serverOpens();
    last().serverSendsBinary(binaryAudio(300, new Uint8Array([1, 2, 3, 4])));
    const unknown = new Uint8Array([9, 0, 0, 0, 0, 1]).buffer;
    last().serverSendsBinary(unknown);
    expect(frames).toHaveLength(1);
    expect(frames[0]).toMatchObject({ type: "binary_audio", event_id: 300 });
    expect(Array.from((frames[0] as Extract<Incoming, { type: "binary_audio" }>).pcm)).toEqual([1, 2, 3, 4]);
  });

  it.each([
    [4001, "session_ended"],
    [4008, "too_many_connections"],
    [1008, "refused"],
  ])("stops for good on close code %i (%s) instead of reconnecting in a loop", (code, reason) => {
    const { ended } = open("c-1");
    last().serverOpens();
    last().serverCloses(code);
    vi.advanceTimersByTime(60000);
    expect(FakeWebSocket.all).toHaveLength(1);
    expect(ended).toEqual([reason]);
  });

  it("reconnects after the other close codes (a frame too large, too many frames, a dropped network)", () => {
    for (const code of [4009, 4029, 1006]) {
      FakeWebSocket.all = [];
      open("c-1");
      last().serverOpens();
      last().serverCloses(code);
      vi.advanceTimersByTime(1000);
      expect(FakeWebSocket.all).toHaveLength(2);
    }
  });

  it("does not send while reconnecting, and reports a refused conversation once", () => {
    const { socket, refused } = open("gone");
    last().serverOpens();
    last().serverCloses();
    expect(socket.send({ type: "user_message", text: "lost?" })).toBe(false);
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(15000);
      last().serverCloses();
    }
    expect(refused).toHaveBeenCalledTimes(1);
  });

  it("stops for good on close, without reporting the old socket's close", () => {
    const { socket, statuses } = open("c-1");
    last().serverOpens();
    socket.close();
    vi.advanceTimersByTime(60000);
    expect(FakeWebSocket.all).toHaveLength(1);
    expect(statuses).toEqual(["connecting", "open"]);
  });

  it("backs off from half a second to ten seconds, with jitter", () => {
    expect(backoffMs(0, () => 0.5)).toBe(500);
    expect(backoffMs(3, () => 0.5)).toBe(4000);
    expect(backoffMs(10, () => 0.5)).toBe(10000);
    expect(backoffMs(0, () => 0)).toBe(400);
    expect(backoffMs(0, () => 1)).toBe(600);
  });
});
