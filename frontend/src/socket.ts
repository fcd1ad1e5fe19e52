// A WebSocket to one conversation, as transport only: the first frame on every open, JSON and binary
// frames in, pongs, and reconnecting with backoff unless the server's close code says not to.
import { CLOSE, decodeBinaryFrame, type ClientFrame, type Incoming, type ServerFrame } from "./protocol";

export type ConnectionStatus = "connecting" | "open" | "closed";

/** Why the socket stopped for good: the page must act (sign in again, or reconnect by hand). */
export type EndReason = "session_ended" | "too_many_connections" | "refused";

export interface SocketHandlers {
  onFrame: (frame: Incoming) => void;
  onStatus: (status: ConnectionStatus) => void;
  /** The first frame of every connection (conversation_initiation_client_data). */
  initiation?: () => ClientFrame;
  /** Called once when several handshakes in a row failed (the conversation may be gone, or the session). */
  onRefused?: () => void;
  /** The server closed with a code that forbids reconnecting by itself. */
  onEnded?: (reason: EndReason) => void;
}

const REFUSED_AFTER_ATTEMPTS = 3;

/** Backoff before reconnect attempt `n` (0-based): 0.5 s doubling to 10 s, with ±20 % jitter. */
export function backoffMs(attempt: number, random = Math.random): number {
  const base = Math.min(10000, 500 * 2 ** attempt);
  return Math.round(base * (0.8 + 0.4 * random()));
}

function endReason(code: number): EndReason | null {
  if (code === CLOSE.sessionEnded) return "session_ended";
  if (code === CLOSE.tooManyConnections) return "too_many_connections";
  if (code === CLOSE.policy) return "refused"; // reconnecting would be refused the same way, in a loop
  return null;
}

export class ConversationSocket {
  private socket: WebSocket | null = null;
  private attempts = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private everOpened = false;
  private outbox: string[] = []; // messages sent before the very first open
  /** Reconnects resume this conversation (set once it exists); until then they open a new one. */
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

  /** Send now; before the first open the message waits (the page connects while it loads). */
  send(message: ClientFrame): boolean {
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
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => {
      this.attempts = 0;
      this.everOpened = true;
      const first = this.handlers.initiation?.();
      if (first) socket.send(JSON.stringify(first));
      this.handlers.onStatus("open");
      this.outbox.splice(0).forEach((text) => socket.send(text));
    };
    socket.onmessage = (event: MessageEvent) => {
      if (this.socket === socket) this.receive(event.data as string | ArrayBuffer);
    };
    socket.onclose = (event: CloseEvent) => {
      if (this.socket !== socket) return;
      this.handlers.onStatus("closed");
      if (this.stopped) return;
      const reason = endReason(event.code);
      if (reason) {
        this.stopped = true;
        this.handlers.onEnded?.(reason);
        return;
      }
      if (++this.attempts === REFUSED_AFTER_ATTEMPTS) this.handlers.onRefused?.();
      this.timer = setTimeout(() => this.open(), backoffMs(this.attempts - 1));
    };
  }

  private receive(data: string | ArrayBuffer): void {
    if (typeof data !== "string") {
      const audio = decodeBinaryFrame(data);
      if (audio) this.handlers.onFrame(audio);
      return;
    }
    let frame: ServerFrame;
    try {
      frame = JSON.parse(data) as ServerFrame;
    } catch {
      return; // not protocol v1; nothing sensible to do with it
    }
    if (frame.type === "ping") this.send({ type: "pong", event_id: frame.ping_event.event_id });
    this.handlers.onFrame(frame);
  }
}
