import { backoffMs, ConversationSocket } from "./socket";
import type { ServerFrame } from "./protocol";

class FakeWebSocket {
  static OPEN = 1;
  static all: FakeWebSocket[] = [];
  readyState = 0;
  sent: unknown[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((event: { data: string }) => void) | null = null;
  onclose: (() => void) | null = null;
  constructor(public url: string) {
    FakeWebSocket.all.push(this);
  }
  send(text: string) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
    this.onclose?.();
  }
  serverOpens() {
    this.readyState = 1;
    this.onopen?.();
  }
  serverSends(frame: ServerFrame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  serverCloses() {
    this.readyState = 3;
    this.onclose?.();
  }
}

const last = () => FakeWebSocket.all[FakeWebSocket.all.length - 1];
const metadata = (id: string): ServerFrame => ({ type: "conversation_initiation_metadata", conversation_initiation_metadata_event: { conversation_id: id, agent_output_audio_format: "pcm_24000" } });

describe("ConversationSocket", () => {
  beforeEach(() => {
    FakeWebSocket.all = [];
    vi.useFakeTimers();
    vi.stubGlobal("WebSocket", FakeWebSocket);
    vi.stubGlobal("location", { protocol: "https:", host: "chat.example" });
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  const open = (conversationId: string | null, agentId: string | null = null) => {
    const frames: ServerFrame[] = [];
    const statuses: string[] = [];
    const refused = vi.fn();
    const socket = new ConversationSocket("/v1/convai/conversation", conversationId, agentId, { onFrame: (f) => frames.push(f), onStatus: (s) => statuses.push(s), onRefused: refused });
    return { socket, frames, statuses, refused };
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
    expect(last().sent).toEqual([{ type: "pong", event_id: 42 }]);
    expect(frames).toHaveLength(1);
  });

  it("holds messages sent before the first open and sends them in order once open", () => {
    const { socket } = open(null);
    expect(socket.send({ type: "user_message", text: "one" })).toBe(true);
    expect(socket.send({ type: "user_message", text: "two" })).toBe(true);
    expect(last().sent).toEqual([]);
    last().serverOpens();
    expect(last().sent).toEqual([{ type: "user_message", text: "one" }, { type: "user_message", text: "two" }]);
  });

  it("reconnects with growing backoff to the conversation the server created", () => {
    const { statuses } = open(null, "agent-7");
    last().serverOpens();
    last().serverSends(metadata("created-1"));
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
