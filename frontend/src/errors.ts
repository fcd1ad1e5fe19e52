// Every error code of the protocol as a sentence a person can act on (the server's own message is
// written for developers and logs; it is kept as a fallback for codes this page does not know yet).

export interface ErrorContext {
  maxChars: number;
  /** Seconds until trying again makes sense, when the server said. */
  retryAfter?: number | null;
  /** When the speech allowance comes back (ISO-8601), when known. */
  resetsAt?: string | null;
}

function inSeconds(seconds: number | null | undefined, fallback: string): string {
  if (!seconds || seconds <= 0) return fallback;
  return seconds < 90 ? `Try again in ${Math.ceil(seconds)} seconds.` : `Try again in ${Math.ceil(seconds / 60)} minutes.`;
}

function until(iso: string | null | undefined): string {
  if (!iso) return "";
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return "";
  const sameDay = at.toDateString() === new Date().toDateString();
  const time = at.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  return sameDay ? ` until ${time}` : ` until ${at.toLocaleDateString(undefined, { weekday: "long" })} ${time}`;
}

const VOICE_SETTINGS = "This agent's voice settings are not accepted by the speech service, so replies arrive as text only. An administrator has to fix the agent's voice.";

/** The sentence for `code`; `serverMessage` is used only for codes this page does not know. */
export function errorSentence(code: string, serverMessage: string, context: ErrorContext): string {
  switch (code) {
    case "invalid_message":
      return "The server did not understand what this page sent. Try again; if it keeps happening, reload the page.";
    case "message_too_long":
      return `That message is longer than ${context.maxChars.toLocaleString()} characters. Shorten it and send it again; your text is still in the box.`;
    case "frame_too_large":
      return "That was too much to send at once. Shorten your message and send it again.";
    case "rate_limited":
      return `You are sending faster than the server allows. ${inSeconds(context.retryAfter, "Wait a few seconds, then send again.")}`;
    case "budget_exhausted":
      return `Your speech allowance is used up${until(context.resetsAt)}. Replies still arrive as text.`;
    case "site_budget_exhausted":
      return "Speech is paused for everyone for now because the site's allowance is used up. Replies still arrive as text.";
    case "turn_replaced":
      return "This reply stopped because you sent a message from another tab or window.";
    case "too_many_connections":
      return "voicechat is open in too many tabs or windows, so this one was disconnected. Close one of the others, then reconnect here.";
    case "session_ended":
      return "You were signed out (or your password changed). Taking you to the sign-in page…";
    case "server_restarted":
      return "The server restarted while it was answering, so that reply stopped early. Send your message again for a full answer.";
    case "override_not_allowed":
      return "The server refused this page's conversation settings. Reload the page; if that does not help, tell the site's administrator.";
    case "tts_unavailable":
      return "The speech service is not reachable right now, so replies arrive as text only. Try again in a few minutes.";
    case "tts_quota_exceeded":
      return "The speech service's credits are used up, so replies arrive as text only until an administrator adds more.";
    case "tts_voice_not_found":
    case "tts_invalid_request":
    case "tts_forbidden":
      return VOICE_SETTINGS;
    case "tts_stream_failed":
    case "tts_timeout":
      return "The voice broke off partway through this reply. The text is complete, and what was spoken is kept for replay.";
    case "llm_unavailable":
      return "The assistant could not answer just now. Your message is saved; send it again in a moment.";
    case "agent_unavailable":
      return "The voice agent is not reachable right now. Your message is saved; send it again in a moment.";
    case "internal_error":
      return "Something went wrong on the server. Try again; if it keeps happening, tell the site's administrator.";
    default:
      if (code.startsWith("tts_")) return "Speech failed for this reply, so it arrives as text only.";
      return serverMessage || `Something went wrong (${code}). Try again.`;
  }
}

/** Codes after which the running reply will not (or no longer) be heard. */
export function endsVoice(code: string): boolean {
  return code.startsWith("tts_") || code === "budget_exhausted" || code === "site_budget_exhausted";
}
