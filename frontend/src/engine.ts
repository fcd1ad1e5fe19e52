// What the audio thread does with the page's commands, apart from the AudioWorklet plumbing (worklet.ts):
// the sample queue, and the reports the page reads (counters, the first audible sample of each turn).
// Kept free of worklet globals so tests drive it with a fake audio clock.
import { type Command, SampleQueue } from "./queue";
import type { QueueState } from "./queue";

/** Messages the worklet posts to the page (shared by player.ts). */
export type WorkletMessage =
  | { type: "stats"; time: number; samplesQueued: number; samplesPlayed: number; underruns: number; state: QueueState; turn: number; turnPlayed: number }
  | { type: "audible"; turn: number; time: number };

const REPORT_EVERY_QUANTA = 8; // ~40 ms at 24 kHz: live enough for tests and highlighting, cheap for the page

export class PlayerEngine {
  // 5 ms fade on flush: long enough not to click, short enough to be "at once".
  readonly queue: SampleQueue;
  private quanta = 0;
  private lastState: QueueState = "idle";

  constructor(
    private sampleRate: number,
    private post: (message: WorkletMessage) => void,
  ) {
    this.queue = new SampleQueue(Math.round(sampleRate * 0.08), Math.round(sampleRate * 0.005));
  }

  /** `currentTime`: the context time of the next quantum to render. */
  command(message: Command, currentTime: number): void {
    switch (message.type) {
      case "push":
        this.queue.push(message.samples);
        break;
      case "end":
        this.queue.end();
        break;
      case "flush":
        this.queue.flush();
        this.report(currentTime);
        break;
      case "turn":
        this.queue.newTurn(message.turn);
        break;
      case "prebuffer":
        this.queue.prebufferSamples = Math.round((this.sampleRate * message.ms) / 1000);
        break;
    }
  }

  /** Fill one render quantum that starts at context time `currentTime`. */
  render(out: Float32Array, currentTime: number): void {
    this.queue.pull(out);
    if (this.queue.firstAudible) {
      this.queue.firstAudible = false;
      this.post({ type: "audible", turn: this.queue.turn, time: currentTime + this.queue.firstAudibleIndex / this.sampleRate });
    }
    this.quanta += 1;
    // `time` is when the reported position has been rendered up to: the end of this quantum.
    const end = currentTime + out.length / this.sampleRate;
    if (this.quanta % REPORT_EVERY_QUANTA === 0 || this.queue.state !== this.lastState) this.report(end);
  }

  private report(time: number): void {
    this.lastState = this.queue.state;
    this.post({ type: "stats", time, ...this.queue.stats() });
  }
}
