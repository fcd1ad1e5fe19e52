// REST calls with the session cookie and Django's CSRF token.
import type { ChatMessage } from "./chat";

export interface Conversation {
  id: string;
  title: string;
  agent: string;
  agent_name: string;
  /** The voice picked for it; "" speaks with the agent's own. */
  voice_id: string;
  updated_at: string;
}

/** A voice the user may pick for conversations with an agent (GET /api/agents/{id}/voices/). */
export interface VoiceOption {
  voice_id: string;
  name: string;
  category: string;
  description: string;
  language: string;
  /** The agent's own voice, used when a conversation picks none. */
  is_default: boolean;
  /** A sample served by our server, or null. */
  preview_url: string | null;
}

/** An answer that was not 2xx, with its status and body kept for a sentence that says why. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`${status}: ${body.slice(0, 200)}`);
  }

  /** DRF's message for `field` (`{"field": ["…"]}`), when the body has one. */
  fieldMessage(field: string): string | null {
    try {
      const value = (JSON.parse(this.body) as Record<string, unknown>)[field];
      const first = Array.isArray(value) ? value[0] : value;
      return typeof first === "string" ? first : null;
    } catch {
      return null;
    }
  }
}

export interface Agent {
  id: string;
  name: string;
  is_default: boolean;
  first_message: string;
}

export interface Page<T> {
  count: number;
  next: string | null;
  previous: string | null;
  results: T[];
}

function csrfToken(): string {
  return document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.slice("csrftoken=".length) ?? "";
}

async function call<T>(url: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(url, {
    credentials: "same-origin",
    ...init,
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), ...(init.headers ?? {}) },
  });
  if (!response.ok) throw new ApiError(response.status, await response.text());
  return (response.status === 204 ? null : await response.json()) as T;
}

export const api = {
  conversations: (url = "/api/conversations/") => call<Page<Conversation>>(url),
  rename: (id: string, title: string) => call<Conversation>(`/api/conversations/${id}/`, { method: "PATCH", body: JSON.stringify({ title }) }),
  conversation: (id: string) => call<Conversation>(`/api/conversations/${id}/`),
  setVoice: (id: string, voiceId: string) => call<Conversation>(`/api/conversations/${id}/`, { method: "PATCH", body: JSON.stringify({ voice_id: voiceId }) }),
  voices: (agentId: string) => call<VoiceOption[]>(`/api/agents/${agentId}/voices/`),
  remove: (id: string) => call<null>(`/api/conversations/${id}/`, { method: "DELETE" }),
  messages: (url: string) => call<Page<ChatMessage>>(url),
  latestMessages: (id: string) => call<Page<ChatMessage>>(`/api/conversations/${id}/messages/?page=last`),
  audio: async (url: string) => {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`audio ${response.status}`);
    return response.arrayBuffer();
  },
};
