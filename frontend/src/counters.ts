// The one documented place where tests (and curious people) read the client's live state:
//
//   window.__voicechat.player      {samplesQueued, samplesPlayed, underruns, state, contextRate, pcmRate,
//                                   firstAudibleMs, turnUnderruns, turnPlayedMs}; state is "locked" until the
//                                   worklet runs (a suspended AudioContext waits for a click or key), then
//                                   idle|buffering|playing|draining
//   window.__voicechat.connection  {status: idle|connecting|open|closed, conversationId}
//
// Both objects are updated in place as things happen (the player from the worklet's ~40 ms reports).
import type { QueueState } from "./queue";

export interface PlayerCounters {
  samplesQueued: number;
  samplesPlayed: number;
  underruns: number;
  state: QueueState | "locked";
  contextRate: number;
  pcmRate: number;
  /** Send action → first non-silent sample at the output, for the current (or last) turn. */
  firstAudibleMs: number | null;
  /** Underruns since the current (or last) turn started. */
  turnUnderruns: number;
  /** Audio of the current turn rendered so far, in ms (what word highlighting follows). */
  turnPlayedMs: number;
}

export type ConnectionState = "idle" | "connecting" | "open" | "closed";

export const counters: PlayerCounters = {
  samplesQueued: 0,
  samplesPlayed: 0,
  underruns: 0,
  state: "locked",
  contextRate: 0,
  pcmRate: 24000,
  firstAudibleMs: null,
  turnUnderruns: 0,
  turnPlayedMs: 0,
};

export const voicechat = {
  player: counters,
  connection: { status: "idle" as ConnectionState, conversationId: null as string | null },
};

declare global {
  interface Window {
    __voicechat?: typeof voicechat;
  }
}
