import { endsVoice, errorSentence } from "./errors";

const CODES = [
  "invalid_message",
  "message_too_long",
  "frame_too_large",
  "rate_limited",
  "budget_exhausted",
  "site_budget_exhausted",
  "turn_replaced",
  "too_many_connections",
  "session_ended",
  "server_restarted",
  "override_not_allowed",
  "tts_unavailable",
  "tts_quota_exceeded",
  "tts_voice_not_found",
  "tts_invalid_request",
  "tts_forbidden",
  "tts_stream_failed",
  "tts_timeout",
  "llm_unavailable",
  "agent_unavailable",
  "internal_error",
];

describe("error sentences", () => {
  it.each(CODES)("says %s as a sentence of its own, not the server's message", (code) => {
    const sentence = errorSentence(code, "SERVER TEXT", { maxChars: 4000 });
    expect(sentence).not.toContain("SERVER TEXT");
    expect(sentence).toMatch(/^[A-Zv].*[.…]$/);
  });

  it("names the limit, the wait and the reset time when it knows them", () => {
    expect(errorSentence("message_too_long", "", { maxChars: 2500 })).toContain("2,500");
    expect(errorSentence("rate_limited", "", { maxChars: 1, retryAfter: 12 })).toContain("12 seconds");
    const tomorrow = new Date(Date.now() + 36 * 3600 * 1000).toISOString();
    expect(errorSentence("budget_exhausted", "", { maxChars: 1, resetsAt: tomorrow })).toMatch(/until \w+/);
  });

  it("falls back to the server's message for a code it does not know", () => {
    expect(errorSentence("brand_new_code", "Something specific.", { maxChars: 1 })).toBe("Something specific.");
  });

  it("knows which errors mean the reply will not be heard", () => {
    expect(endsVoice("tts_unavailable")).toBe(true);
    expect(endsVoice("budget_exhausted")).toBe(true);
    expect(endsVoice("rate_limited")).toBe(false);
  });
});
