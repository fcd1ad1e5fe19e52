// Protocol v1 (docs/protocol.md): the server frames, and the reducer that turns them into chat state.

export type Role = "user" | "assistant";

export interface ChatMessage {
  id: string;
  role: Role;
  text: string;
  status: string;
  audio_status?: string;
  audio_url?: string | null;
  error_code?: string;
  error_message?: string;
  created_at?: string;
}

export interface Notice {
  id: number;
  code: string;
  message: string;
}

export interface ChatState {
  conversationId: string | null;
  audioFormat: string | null;
  maxChars: number;
  messages: ChatMessage[];
  streamingId: string | null;
  running: boolean;
  notices: Notice[];
  announcement: string;
}

export type ServerFrame =
  | {
      type: "conversation_initiation_metadata";
      conversation_initiation_metadata_event: {
        conversation_id: string;
        agent_output_audio_format: string;
        user_input_audio_format?: string;
        agent_id?: string;
        max_message_chars?: number;
        protocol_version?: number | string;
      };
    }
  | { type: "user_transcript"; user_transcription_event: { user_transcript: string; event_id: number; message_id: string } }
  | { type: "agent_chat_response_part"; text_response_part: { text: string; type: "start" | "delta" | "stop"; event_id: number; message_id: string } }
  | { type: "audio"; audio_event: { audio_base_64: string; event_id: number } }
  | { type: "agent_response"; agent_response_event: { agent_response: string; event_id: number; message_id: string } }
  | { type: "interruption"; interruption_event: { event_id: number; message_id: string } }
  | { type: "agent_response_correction"; agent_response_correction_event: { original_agent_response: string; corrected_agent_response: string; event_id: number; message_id: string } }
  | {
      type: "agent_response_complete";
      agent_response_complete_event: { event_id: number; message_id: string; status: string; audio_status: string; audio_url: string | null; metrics?: Record<string, number | null> };
    }
  | { type: "ping"; ping_event: { event_id: number; ping_ms: number | null } }
  | { type: "error"; error_event: { code: string; message: string } };

export type Action =
  | { type: "server"; frame: ServerFrame }
  | { type: "history"; messages: ChatMessage[]; older: boolean }
  | { type: "reset"; conversationId: string | null }
  | { type: "disconnected" }
  | { type: "notice"; code: string; message: string }
  | { type: "dismiss"; id: number };

export function initialState(conversationId: string | null, maxChars: number): ChatState {
  return { conversationId, audioFormat: null, maxChars, messages: [], streamingId: null, running: false, notices: [], announcement: "" };
}

let noticeIds = 0;

function update(state: ChatState, id: string, change: (m: ChatMessage) => ChatMessage): ChatState {
  return { ...state, messages: state.messages.map((m) => (m.id === id ? change(m) : m)) };
}

function upsert(state: ChatState, message: ChatMessage): ChatState {
  if (state.messages.some((m) => m.id === message.id)) return update(state, message.id, (m) => ({ ...m, ...message }));
  return { ...state, messages: [...state.messages, message] };
}

export function reduceFrame(state: ChatState, frame: ServerFrame): ChatState {
  switch (frame.type) {
    case "conversation_initiation_metadata": {
      const meta = frame.conversation_initiation_metadata_event;
      return { ...state, conversationId: meta.conversation_id, audioFormat: meta.agent_output_audio_format, maxChars: meta.max_message_chars ?? state.maxChars };
    }
    case "user_transcript": {
      const event = frame.user_transcription_event;
      return { ...upsert(state, { id: event.message_id, role: "user", text: event.user_transcript, status: "complete" }), running: true };
    }
    case "agent_chat_response_part": {
      const part = frame.text_response_part;
      if (part.type === "start") return { ...upsert(state, { id: part.message_id, role: "assistant", text: "", status: "streaming" }), streamingId: part.message_id };
      if (part.type === "delta") return update(state, part.message_id, (m) => ({ ...m, text: m.text + part.text }));
      return state;
    }
    case "agent_response": {
      const event = frame.agent_response_event;
      return { ...update(state, event.message_id, (m) => ({ ...m, text: event.agent_response })), announcement: event.agent_response };
    }
    case "interruption":
      return { ...update(state, frame.interruption_event.message_id, (m) => ({ ...m, status: "interrupted" })), streamingId: null };
    case "agent_response_correction": {
      const event = frame.agent_response_correction_event;
      return update(state, event.message_id, (m) => ({ ...m, text: event.corrected_agent_response }));
    }
    case "agent_response_complete": {
      const event = frame.agent_response_complete_event;
      const next = update(state, event.message_id, (m) => ({ ...m, status: event.status, audio_status: event.audio_status, audio_url: event.audio_url }));
      return { ...next, streamingId: null, running: false };
    }
    case "error":
      return { ...state, notices: [...state.notices, { id: ++noticeIds, ...frame.error_event }] };
    case "audio":
    case "ping":
      return state; // side effects only: the player and the socket handle them
  }
}

export function reducer(state: ChatState, action: Action): ChatState {
  switch (action.type) {
    case "server":
      return reduceFrame(state, action.frame);
    case "history": {
      // Known messages take the server's fields (a resync after a reconnect); new ones join in order.
      const incoming = new Map(action.messages.map((m) => [m.id, m]));
      const merged = state.messages.map((m) => (incoming.has(m.id) ? { ...m, ...incoming.get(m.id) } : m));
      const known = new Set(state.messages.map((m) => m.id));
      const fresh = action.messages.filter((m) => !known.has(m.id));
      return { ...state, messages: action.older ? [...fresh, ...merged] : [...merged, ...fresh] };
    }
    case "disconnected":
      // The server stops a turn whose socket closed; the resync after reconnecting shows its final status.
      return { ...state, running: false, streamingId: null };
    case "reset":
      return { ...initialState(action.conversationId, state.maxChars), notices: state.notices };
    case "notice":
      return { ...state, notices: [...state.notices, { id: ++noticeIds, code: action.code, message: action.message }] };
    case "dismiss":
      return { ...state, notices: state.notices.filter((n) => n.id !== action.id) };
  }
}
