// Server frames for scripted tests, shaped as docs/protocol.md says.
import type { ServerFrame, SpeechBudget, WordTiming } from "../protocol";
import { pcmBase64 } from "./fakeAudio";

let eventId = 0;
const next = () => ++eventId;

export const frames = {
  metadata: (conversationId: string | null, extra: { speech_budget?: SpeechBudget; max_message_chars?: number; format?: string } = {}): ServerFrame => ({
    type: "conversation_initiation_metadata",
    conversation_initiation_metadata_event: {
      conversation_id: conversationId,
      agent_output_audio_format: extra.format ?? "pcm_24000",
      user_input_audio_format: "none",
      max_message_chars: extra.max_message_chars,
      speech_budget: extra.speech_budget,
    },
  }),
  transcript: (messageId: string, text: string, conversationId?: string): ServerFrame => ({
    type: "user_transcript",
    user_transcription_event: { user_transcript: text, event_id: next(), message_id: messageId, conversation_id: conversationId },
  }),
  start: (messageId: string): ServerFrame => ({ type: "agent_chat_response_part", text_response_part: { text: "", type: "start", event_id: next(), message_id: messageId } }),
  delta: (messageId: string, text: string): ServerFrame => ({ type: "agent_chat_response_part", text_response_part: { text, type: "delta", event_id: next(), message_id: messageId } }),
  stop: (messageId: string): ServerFrame => ({ type: "agent_chat_response_part", text_response_part: { text: "", type: "stop", event_id: next(), message_id: messageId } }),
  audio: (ms: number, words?: WordTiming[], level = 8000): ServerFrame => ({ type: "audio", audio_event: { audio_base_64: pcmBase64(ms, 24000, level), event_id: next(), words } }),
  response: (messageId: string | null, text: string, greeting = false): ServerFrame => ({
    type: "agent_response",
    agent_response_event: { agent_response: text, event_id: next(), message_id: messageId, greeting: greeting || undefined },
  }),
  interruption: (messageId: string): ServerFrame => ({ type: "interruption", interruption_event: { event_id: next(), message_id: messageId } }),
  correction: (messageId: string, original: string, corrected: string): ServerFrame => ({
    type: "agent_response_correction",
    agent_response_correction_event: { original_agent_response: original, corrected_agent_response: corrected, event_id: next(), message_id: messageId },
  }),
  complete: (messageId: string | null, extra: { status?: string; audio_status?: string; audio_url?: string | null; words?: WordTiming[]; greeting?: boolean; duration?: number } = {}): ServerFrame => ({
    type: "agent_response_complete",
    agent_response_complete_event: {
      event_id: next(),
      message_id: messageId,
      status: extra.status ?? "complete",
      audio_status: extra.audio_status ?? (extra.audio_url === null ? "none" : "complete"),
      audio_url: extra.audio_url === undefined ? `/api/messages/${messageId}/audio/` : extra.audio_url,
      words: extra.words,
      greeting: extra.greeting,
      metrics: { audio_duration_ms: extra.duration ?? null },
    },
  }),
  queued: (messageId: string, position: number | null): ServerFrame => ({ type: "queued", queued_event: { event_id: next(), message_id: messageId, reason: "tts_slots", position } }),
  budget: (budget: SpeechBudget): ServerFrame => ({ type: "budget", budget_event: { event_id: next(), ...budget } }),
  error: (code: string, message = "server says no", retry_after?: number): ServerFrame => ({ type: "error", error_event: { code, message, retry_after } }),
  alignment: (messageId: string | null, words: WordTiming[]): ServerFrame => ({
    type: "audio_alignment",
    audio_alignment_event: { event_id: next(), message_id: messageId, words },
  }),
};

/** A binary audio frame: kind 0x01, event id (uint32 LE), then PCM. */
export function binaryAudio(eventId: number, pcm: Uint8Array): ArrayBuffer {
  const data = new Uint8Array(5 + pcm.length);
  const view = new DataView(data.buffer);
  view.setUint8(0, 1);
  view.setUint32(1, eventId, true);
  data.set(pcm, 5);
  return data.buffer;
}
