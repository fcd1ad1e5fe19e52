// The chat page's state and its reducer. Actions say what happened in the conversation ("a reply
// started", "its words arrived"); conversation.ts is the one place that turns server frames into them.
import type { SpeechBudget, WordTiming } from "./protocol";
import { plainText } from "./markdown";

export type Role = "user" | "assistant";

export interface ChatMessage {
  id: string;
  role: Role;
  text: string;
  status: string;
  audio_status?: string;
  audio_url?: string | null;
  audio_duration_ms?: number | null;
  error_code?: string;
  error_message?: string;
  created_at?: string;
  /** Word timings of the reply's audio (see WordTiming), from audio frames live or the API when stored. */
  words?: WordTiming[] | null;
  /** The agent's first message, spoken when a new conversation opens (not yet a stored message). */
  greeting?: boolean;
  /** Its text is still arriving (between the reply's start and stop parts). */
  writing?: boolean;
  /** An on-demand Play was asked for and its audio is being made. */
  synthesizing?: boolean;
}

export type NoticeAction = "reconnect" | "reload";

export interface Notice {
  id: number;
  code: string;
  message: string;
  action?: NoticeAction;
}

export interface ChatState {
  /** The conversation on screen; null for a new one that has no message yet. */
  conversationId: string | null;
  maxChars: number;
  messages: ChatMessage[];
  /** A turn runs: from the user's message being saved to its reply's agent_response_complete. */
  running: boolean;
  /** The reply whose text is arriving now. */
  streamingId: string | null;
  /** The running turn's speech waits for a free voice slot (position in the line, when known). */
  queued: { messageId: string; position: number | null } | null;
  /** The running turn will be spoken (auto-play on and nothing said the voice failed). */
  voiceExpected: boolean;
  budget: Budget | null;
  notices: Notice[];
  announcement: string;
}

/** The speech allowance; `exhausted` once the server refused to speak for it (a few characters may be
 * left, too few for a reply), until the allowance grows again (it was reset). */
export type Budget = SpeechBudget & { exhausted?: boolean };

export type Action =
  | { type: "opened"; maxChars?: number; budget?: SpeechBudget | null }
  | { type: "conversation"; conversationId: string }
  | { type: "user_message"; id: string; text: string; voiceExpected: boolean; at: string }
  | { type: "reply_started"; id: string; at: string; greeting?: boolean; text?: string }
  | { type: "reply_text"; id: string; delta: string }
  | { type: "reply_written"; id: string }
  | { type: "reply_full_text"; id: string; text: string; announce: boolean }
  | { type: "reply_words"; id: string; words: WordTiming[]; replace?: boolean }
  | { type: "reply_interrupted"; id: string }
  | { type: "reply_completed"; id: string; status: string; audioStatus?: string; audioUrl: string | null; durationMs?: number | null; words?: WordTiming[]; endsTurn: boolean }
  | { type: "synthesizing"; id: string }
  | { type: "queued"; messageId: string; position: number | null }
  | { type: "voice_lost" }
  | { type: "budget"; budget: SpeechBudget }
  | { type: "budget_exhausted"; site: boolean }
  | { type: "history"; messages: ChatMessage[]; older: boolean }
  | { type: "reset"; conversationId: string | null }
  | { type: "disconnected" }
  | { type: "notice"; code: string; message: string; action?: NoticeAction }
  | { type: "dismiss"; id: number }
  | { type: "dismiss_code"; code: string };

/** The local id of the greeting bubble (the server sends it with message_id null). */
export const GREETING_ID = "greeting";

export function initialState(conversationId: string | null, maxChars: number): ChatState {
  return {
    conversationId,
    maxChars,
    messages: [],
    running: false,
    streamingId: null,
    queued: null,
    voiceExpected: false,
    budget: null,
    notices: [],
    announcement: "",
  };
}

let noticeIds = 0;

function update(state: ChatState, id: string, change: (m: ChatMessage) => ChatMessage): ChatState {
  return { ...state, messages: state.messages.map((m) => (m.id === id ? change(m) : m)) };
}

function upsert(state: ChatState, message: ChatMessage): ChatState {
  if (state.messages.some((m) => m.id === message.id)) return update(state, message.id, (m) => ({ ...m, ...message }));
  return { ...state, messages: [...state.messages, message] };
}

/** The text of reply `id` has all arrived. */
function written(state: ChatState, id: string): ChatState {
  const next = update(state, id, (m) => (m.writing ? { ...m, writing: false } : m));
  return state.streamingId === id ? { ...next, streamingId: null } : next;
}

/** Merge word timings that arrive a few at a time, in order of their display offsets (the renderer
 * and the highlighter search them by offset). */
function mergeWords(known: WordTiming[] | null | undefined, incoming: WordTiming[]): WordTiming[] {
  const all = [...(known ?? []), ...incoming];
  all.sort((a, b) => a[0] - b[0] || a[2] - b[2]);
  return all.filter((w, i) => i === 0 || w[0] !== all[i - 1][0] || w[2] !== all[i - 1][2]);
}

export function reducer(state: ChatState, action: Action): ChatState {
  switch (action.type) {
    case "opened":
      return { ...state, maxChars: action.maxChars ?? state.maxChars, budget: action.budget ?? state.budget };
    case "conversation":
      return { ...state, conversationId: action.conversationId };
    case "user_message": {
      const message: ChatMessage = { id: action.id, role: "user", text: action.text, status: "complete", created_at: action.at };
      return { ...upsert(state, message), running: true, queued: null, voiceExpected: action.voiceExpected };
    }
    case "reply_started": {
      // A greeting arrives whole: nothing is being written, only its voice is on its way.
      const status = action.greeting ? "complete" : "streaming";
      const message: ChatMessage = { id: action.id, role: "assistant", text: action.text ?? "", status, created_at: action.at, greeting: action.greeting, writing: !action.greeting };
      return { ...upsert(state, message), streamingId: action.greeting ? state.streamingId : action.id };
    }
    case "reply_text":
      return update(state, action.id, (m) => ({ ...m, text: m.text + action.delta }));
    case "reply_written":
      return written(state, action.id);
    case "reply_full_text": {
      const next = written(update(state, action.id, (m) => ({ ...m, text: action.text })), action.id);
      return action.announce ? { ...next, announcement: plainText(action.text) } : next;
    }
    case "reply_words":
      return update(state, action.id, (m) => ({ ...m, words: mergeWords(action.replace ? [] : m.words, action.words) }));
    case "reply_interrupted":
      return { ...written(update(state, action.id, (m) => ({ ...m, status: "interrupted" })), action.id), queued: null };
    case "reply_completed": {
      const next = written(update(state, action.id, (m) => ({
        ...m,
        status: action.status,
        audio_status: action.audioStatus ?? m.audio_status,
        audio_url: action.audioUrl ?? m.audio_url,
        audio_duration_ms: action.durationMs ?? m.audio_duration_ms,
        words: action.words ? mergeWords([], action.words) : m.words,
        synthesizing: false,
      })), action.id);
      if (!action.endsTurn) return next;
      return { ...next, running: false, queued: null, voiceExpected: false };
    }
    case "synthesizing":
      return update(state, action.id, (m) => ({ ...m, synthesizing: true }));
    case "queued":
      return { ...state, queued: { messageId: action.messageId, position: action.position } };
    case "voice_lost":
      return { ...state, voiceExpected: false, queued: null };
    case "budget": {
      const known = state.budget;
      const grew = !known || (action.budget.remaining_chars ?? Infinity) > (known.remaining_chars ?? Infinity);
      return { ...state, budget: { ...action.budget, exhausted: !grew && !!known?.exhausted } };
    }
    case "budget_exhausted": {
      const known = state.budget ?? { remaining_chars: null, limit_chars: null, resets_at: null, site_exhausted: false };
      return { ...state, budget: action.site ? { ...known, site_exhausted: true } : { ...known, exhausted: true } };
    }
    case "history": {
      // Known messages take the server's fields (a resync after a reconnect); new ones join in order. A
      // greeting shown live is stored as the conversation's first message once it exists: the stored one wins.
      const incoming = new Map(action.messages.map((m) => [m.id, m.words ? { ...m, words: mergeWords([], m.words) } : m]));
      const local = action.messages.length ? state.messages.filter((m) => m.id !== GREETING_ID) : state.messages;
      const merged = local.map((m) => (incoming.has(m.id) ? { ...m, ...incoming.get(m.id) } : m));
      const known = new Set(local.map((m) => m.id));
      const fresh = action.messages.filter((m) => !known.has(m.id)).map((m) => incoming.get(m.id) ?? m);
      return { ...state, messages: action.older ? [...fresh, ...merged] : [...merged, ...fresh] };
    }
    case "disconnected":
      // The server stops a turn whose socket closed; the resync after reconnecting shows its final status.
      return { ...state, running: false, streamingId: null, queued: null, voiceExpected: false };
    case "reset":
      return { ...initialState(action.conversationId, state.maxChars), notices: state.notices, budget: state.budget };
    case "notice": {
      // The same problem twice shows once (a reconnect loop must not stack up notices).
      const others = state.notices.filter((n) => n.code !== action.code);
      return { ...state, notices: [...others, { id: ++noticeIds, code: action.code, message: action.message, action: action.action }] };
    }
    case "dismiss":
      return { ...state, notices: state.notices.filter((n) => n.id !== action.id) };
    case "dismiss_code":
      return { ...state, notices: state.notices.filter((n) => n.code !== action.code) };
  }
}
