// Protocol v1 on the wire (docs/protocol.md): the frames the server sends and the ones this page sends.
// Types only, plus the binary audio frame's decoder; what each frame means is decided in conversation.ts.

/** [display_start, display_end, start_ms, end_ms]: a word of the reply's displayed text and when it is heard. */
export type WordTiming = [number, number, number, number];

export interface Alignment {
  chars: string[];
  char_start_times_ms: number[];
  char_durations_ms: number[];
}

export interface SpeechBudget {
  remaining_chars: number | null;
  limit_chars: number | null;
  resets_at: string | null;
  site_exhausted: boolean;
}

export interface TurnMetrics {
  [name: string]: number | null;
}

export type ServerFrame =
  | {
      type: "conversation_initiation_metadata";
      conversation_initiation_metadata_event: {
        conversation_id: string | null;
        agent_output_audio_format: string;
        user_input_audio_format?: string;
        agent_id?: string;
        max_message_chars?: number;
        protocol_version?: number | string;
        speech_budget?: SpeechBudget;
      };
    }
  | { type: "user_transcript"; user_transcription_event: { user_transcript: string; event_id: number; message_id: string; conversation_id?: string } }
  | { type: "agent_chat_response_part"; text_response_part: { text: string; type: "start" | "delta" | "stop"; event_id: number; message_id: string } }
  | { type: "audio"; audio_event: { audio_base_64: string; event_id: number; alignment?: Alignment | null; words?: WordTiming[] } }
  | { type: "audio_alignment"; audio_alignment_event: { event_id: number; message_id: string | null; alignment?: Alignment | null; words?: WordTiming[] } }
  | { type: "agent_response"; agent_response_event: { agent_response: string; event_id: number; message_id: string | null; greeting?: boolean } }
  | { type: "interruption"; interruption_event: { event_id: number; message_id: string } }
  | { type: "agent_response_correction"; agent_response_correction_event: { original_agent_response: string; corrected_agent_response: string; event_id: number; message_id: string } }
  | {
      type: "agent_response_complete";
      agent_response_complete_event: {
        event_id: number;
        message_id: string | null;
        status: string;
        audio_status?: string;
        audio_url: string | null;
        metrics?: TurnMetrics;
        words?: WordTiming[];
        greeting?: boolean;
      };
    }
  | { type: "queued"; queued_event: { event_id: number; message_id: string; reason: string; position: number | null } }
  | { type: "budget"; budget_event: SpeechBudget & { event_id: number } }
  | { type: "ping"; ping_event: { event_id: number; ping_ms: number | null } }
  | { type: "error"; error_event: { code: string; message: string; retry_after?: number | null } };

/** A binary audio frame (negotiated with voicechat.binary_audio), decoded; never sent as JSON. */
export interface BinaryAudio {
  type: "binary_audio";
  event_id: number;
  pcm: Uint8Array;
}

export type Incoming = ServerFrame | BinaryAudio;

export type ClientFrame =
  | {
      type: "conversation_initiation_client_data";
      /** Only tts.voice_id, and only for a conversation not created yet: the voice the user picked. */
      conversation_config_override?: { tts: { voice_id: string } };
      voicechat: { binary_audio: boolean; speak: boolean };
    }
  | { type: "user_message"; text: string }
  | { type: "interrupt" }
  | { type: "settings"; speak: boolean }
  | { type: "speak"; message_id: string }
  | { type: "pong"; event_id: number }
  | { type: "playback_report"; message_id: string; first_audible_ms: number | null; underruns: number; heard_ms?: number };

const AUDIO_KIND = 0x01;

/** 1 byte kind (0x01 audio) + uint32 LE event_id + raw PCM; null for a kind this client does not know. */
export function decodeBinaryFrame(data: ArrayBuffer): BinaryAudio | null {
  if (data.byteLength < 5) return null;
  const view = new DataView(data);
  if (view.getUint8(0) !== AUDIO_KIND) return null;
  return { type: "binary_audio", event_id: view.getUint32(1, true), pcm: new Uint8Array(data, 5) };
}

/** Close codes with a meaning of their own (docs/protocol.md). */
export const CLOSE = {
  sessionEnded: 4001,
  tooManyConnections: 4008,
  frameTooLarge: 4009,
  tooManyFrames: 4029,
  policy: 1008,
} as const;
