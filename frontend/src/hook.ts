// The one documented place where tests (and curious people) read the client's live state:
//
//   window.__voicechat.player      {samplesQueued, samplesPlayed, underruns, state, contextRate, pcmRate,
//                                   firstAudibleMs, turnUnderruns}; state is "locked" until the first
//                                   Send/Replay creates the AudioContext, then idle|buffering|playing|draining
//   window.__voicechat.connection  {status: idle|connecting|open|closed, conversationId}
//
// Both objects are updated in place as things happen (the player from the worklet's ~40 ms reports).
import { counters } from "./player";

export type ConnectionState = "idle" | "connecting" | "open" | "closed";

export const voicechat = {
  player: counters,
  connection: { status: "idle" as ConnectionState, conversationId: null as string | null },
};

declare global {
  interface Window {
    __voicechat?: typeof voicechat;
  }
}
