// A WebSocket that reconnects with backoff to the same conversation and answers pings.
import type { ServerFrame } from "./protocol";

export type ConnectionStatus = "connecting" | "open" | "closed";

export class ConversationSocket {
  private socket: WebSocket | null = null;
  private attempts = 0;
  private timer: number | undefined;
  private stopped = false;
  conversationId: string | null;

  constructor(
    private path: string,
    conversationId: string | null,
    private agentId: string | null,
    private onFrame: (frame: ServerFrame) => void,
    private onStatus: (status: ConnectionStatus) => void,
  ) {
    this.conversationId = conversationId;
    this.open();
  }

  send(message: Record<string, unknown>): boolean {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  close(): void {
    this.stopped = true;
    window.clearTimeout(this.timer);
    this.socket?.close();
  }

  private url(): string {
    const query = new URLSearchParams();
    if (this.conversationId) query.set("conversation_id", this.conversationId);
    else if (this.agentId) query.set("agent_id", this.agentId);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const qs = query.toString();
    return `${scheme}://${location.host}${this.path}${qs ? `?${qs}` : ""}`;
  }

  private open(): void {
    this.onStatus("connecting");
    const socket = new WebSocket(this.url());
    this.socket = socket;
    socket.onopen = () => {
      this.attempts = 0;
      this.onStatus("open");
    };
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data as string) as ServerFrame;
      if (frame.type === "conversation_initiation_metadata") {
        this.conversationId = frame.conversation_initiation_metadata_event.conversation_id;
      } else if (frame.type === "ping") {
        this.send({ type: "pong", event_id: frame.ping_event.event_id });
      }
      this.onFrame(frame);
    };
    socket.onclose = () => {
      this.onStatus("closed");
      if (this.stopped) return;
      const delay = Math.min(10000, 500 * 2 ** this.attempts++);
      this.timer = window.setTimeout(() => this.open(), delay);
    };
  }
}
