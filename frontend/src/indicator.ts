// What the toolbar says the assistant is doing, from what is on screen and what is actually audible.
import type { ChatState } from "./chat";
import type { NowPlaying } from "./player";

/** speaking: its voice reaches the speakers; queued: the voice waits for a free slot on the server;
 * waiting: the voice is on its way (being made, or refilling its buffer). */
export type Voice = "speaking" | "queued" | "waiting" | null;

export interface Indicator {
  /** The reply's text is still arriving. */
  writing: boolean;
  voice: Voice;
  queuePosition: number | null;
}

export function indicator(state: ChatState, now: NowPlaying, speak: boolean, replayId: string | null): Indicator {
  const writing = state.streamingId !== null;
  const queuePosition = state.queued?.position ?? null;
  const ours = now.label !== null && now.label !== replayId; // a reply's own voice, not a replay
  if (ours && now.audible) return { writing, voice: "speaking", queuePosition: null };
  const turnVoice = state.running && state.voiceExpected && speak;
  const synthesizing = state.messages.some((m) => m.synthesizing);
  const refilling = ours && now.reported && now.state === "buffering";
  if (!turnVoice && !synthesizing && !refilling) return { writing, voice: null, queuePosition: null };
  if (state.queued && (turnVoice || synthesizing)) return { writing, voice: "queued", queuePosition };
  return { writing, voice: "waiting", queuePosition: null };
}
