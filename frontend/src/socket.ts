// A WebSocket to one conversation: reconnects with backoff to the same conversation and answers pings.
import type { ServerFrame } from "./protocol";

export type ConnectionStatus = "connecting" | "open" | "closed";

export interface SocketHandlers {
  onFrame: (frame: ServerFrame) => void;
  onStatus: (status: ConnectionStatus) => void;
  /** Called once when several handshakes in a row failed (the conversation may be gone, or the session). */
  onRefused?: () => void;
}

const REFUSED_AFTER_ATTEMPTS = 3;

/** Backoff before reconnect attempt `n` (0-based): 0.5 s doubling to 10 s, with ±20 % jitter. */
export function backoffMs(attempt: number, random = Math.random): number {
  const base = Math.min(10000, 500 * 2 ** attempt);
  return Math.round(base * (0.8 + 0.4 * random()));
}

export class ConversationSocket {
  private socket: WebSocket | null = null;
  private attempts = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private everOpened = false;
  private outbox: string[] = []; // messages sent before the very first open
  conversationId: string | null;

  constructor(
    private path: string,
    conversationId: string | null,
    private agentId: string | null,
    private handlers: SocketHandlers,
  ) {
    this.conversationId = conversationId;
    this.open();
  }

  /** Send now; before the first open the message waits (a new conversation connects on demand). */
  send(message: Record<string, unknown>): boolean {
    const text = JSON.stringify(message);
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(text);
      return true;
    }
    if (!this.everOpened && !this.stopped) {
      this.outbox.push(text);
      return true;
    }
    return false;
  }

  close(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.outbox = [];
    const socket = this.socket;
    this.socket = null; // its close event no longer reports: a newer socket may own the status now
    socket?.close();
  }

  url(): string {
    const query = new URLSearchParams();
    if (this.conversationId) query.set("conversation_id", this.conversationId);
    else if (this.agentId) query.set("agent_id", this.agentId);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const qs = query.toString();
    return `${scheme}://${location.host}${this.path}${qs ? `?${qs}` : ""}`;
  }

  private open(): void {
    this.handlers.onStatus("connecting");
    const socket = new WebSocket(this.url());
    this.socket = socket;
    socket.onopen = () => {
      this.attempts = 0;
      this.everOpened = true;
      this.handlers.onStatus("open");
      this.outbox.splice(0).forEach((text) => socket.send(text));
    };
    socket.onmessage = (event: MessageEvent) => {
      if (this.socket === socket) this.receive(event.data as string);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.handlers.onStatus("closed");
      if (this.stopped) return;
      if (++this.attempts === REFUSED_AFTER_ATTEMPTS) this.handlers.onRefused?.();
      this.timer = setTimeout(() => this.open(), backoffMs(this.attempts - 1));
    };
  }

  private receive(data: string): void {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(data) as ServerFrame;
    } catch {
      return; // not protocol v1; nothing sensible to do with it
    }
    if (frame.type === "conversation_initiation_metadata") {
      // Reconnects re-open this conversation instead of creating another one.
      this.conversationId = frame.conversation_initiation_metadata_event.conversation_id;
    } else if (frame.type === "ping") {
      this.send({ type: "pong", event_id: frame.ping_event.event_id });
    }
    this.handlers.onFrame(frame);
  }
}
