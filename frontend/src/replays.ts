// Replaying stored replies: play, pause, resume and seek, one at a time, through the same player as live
// audio (a replay never calls the vendor). The WAVs of the last few replies stay in memory, so pausing,
// resuming and clicking words do not download them again.
import type { Player } from "./player";
import type { TurnAudio } from "./turnAudio";
import { wavDurationMs } from "./player";

export interface ReplayState {
  messageId: string;
  /** loading: the WAV is on its way; playing: it sounds (or is about to); paused: stopped at positionMs. */
  phase: "loading" | "playing" | "paused";
  durationMs: number | null;
  /** Where a paused replay stands (a playing one reads the player's position). */
  positionMs: number;
  /** The player turn of a playing replay. */
  serial: number | null;
}

const CACHED_REPLIES = 6;

export class Replays {
  private cache = new Map<string, ArrayBuffer>();
  private state: ReplayState | null = null;
  private listeners = new Set<() => void>();
  private request = 0; // a newer play() supersedes a download still on its way

  constructor(
    private player: Player,
    private live: TurnAudio,
    private fetchAudio: (url: string) => Promise<ArrayBuffer>,
  ) {
    player.subscribe(() => this.onPlayer());
  }

  current(): ReplayState | null {
    return this.state;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Play `url` (the stored audio of `messageId`) from `fromMs`; call inside the click (it unlocks audio). */
  async play(messageId: string, url: string, fromMs = 0): Promise<void> {
    const unlocked = this.player.unlock(); // synchronously inside the click, before any await
    this.live.yieldToReplay();
    const request = ++this.request;
    const cached = this.cache.get(url);
    this.set({ messageId, phase: cached ? "playing" : "loading", durationMs: cached ? wavDurationMs(cached) : null, positionMs: fromMs, serial: null });
    if (!cached) this.player.flush(); // whatever plays stops at the click, not when the download ends
    const data = cached ?? (await this.fetchAudio(url));
    await unlocked;
    if (request !== this.request) return; // another replay (or a pause) came first
    this.remember(url, data);
    const durationMs = wavDurationMs(data);
    const start = Math.min(Math.max(0, fromMs), durationMs);
    const serial = this.player.playWav(data, { label: messageId, offsetMs: start });
    this.set({ messageId, phase: "playing", durationMs, positionMs: start, serial });
  }

  /** Pause the replay where the listener is; resume() goes on from there. */
  pause(): void {
    const state = this.state;
    if (!state || state.phase === "paused") return;
    this.request++;
    const at = state.serial !== null ? this.player.positionMs(state.serial) : null;
    this.set({ ...state, phase: "paused", positionMs: at ?? state.positionMs, serial: null });
    this.player.flush();
  }

  /** Stop and forget the replay (another reply takes the player). */
  stop(): void {
    if (!this.state) return;
    this.request++;
    const playing = this.state.serial !== null;
    this.set(null);
    if (playing) this.player.flush();
  }

  /** The position of `messageId`'s replay in ms, or null when it is not the one replayed. */
  positionMs(messageId: string): number | null {
    const state = this.state;
    if (!state || state.messageId !== messageId) return null;
    if (state.serial === null) return state.positionMs;
    return this.player.positionMs(state.serial) ?? state.positionMs;
  }

  private onPlayer(): void {
    const state = this.state;
    if (!state || state.serial === null) return;
    const now = this.player.nowPlaying();
    if (now.turn !== state.serial) this.set(null); // something else plays now
    else if (now.reported && now.state === "idle") this.set(null); // played to its end
  }

  private remember(url: string, data: ArrayBuffer): void {
    this.cache.delete(url);
    this.cache.set(url, data);
    while (this.cache.size > CACHED_REPLIES) this.cache.delete(this.cache.keys().next().value as string);
  }

  private set(state: ReplayState | null): void {
    this.state = state;
    this.listeners.forEach((listener) => listener());
  }
}
