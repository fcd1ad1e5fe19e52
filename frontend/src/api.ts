// REST calls with the session cookie and Django's CSRF token.
import type { ChatMessage } from "./chat";

export interface Conversation {
  id: string;
  title: string;
  agent: string;
  agent_name: string;
  updated_at: string;
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
  if (!response.ok) {
    const body = await response.text();
    throw new Error(`${response.status}: ${body.slice(0, 200)}`);
  }
  return (response.status === 204 ? null : await response.json()) as T;
}

export const api = {
  conversations: (url = "/api/conversations/") => call<Page<Conversation>>(url),
  rename: (id: string, title: string) => call<Conversation>(`/api/conversations/${id}/`, { method: "PATCH", body: JSON.stringify({ title }) }),
  remove: (id: string) => call<null>(`/api/conversations/${id}/`, { method: "DELETE" }),
  messages: (url: string) => call<Page<ChatMessage>>(url),
  latestMessages: (id: string) => call<Page<ChatMessage>>(`/api/conversations/${id}/messages/?page=last`),
  audio: async (url: string) => {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`audio ${response.status}`);
    return response.arrayBuffer();
  },
};
