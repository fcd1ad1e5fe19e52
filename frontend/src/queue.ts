// The sample queue the AudioWorklet plays from: gapless, with a start-up buffer, underrun counting
// and a short fade on flush. Pure logic, so it is unit-tested outside the audio thread.

export type QueueState = "idle" | "buffering" | "playing" | "draining";

export interface QueueStats {
  samplesQueued: number;
  samplesPlayed: number;
  underruns: number;
  state: QueueState;
}

export class SampleQueue {
  private chunks: Float32Array[] = [];
  private offset = 0; // read position inside chunks[0]
  private available = 0;
  private fadeLeft = 0;
  private fadeLength: number;
  state: QueueState = "idle";
  samplesQueued = 0;
  samplesPlayed = 0;
  underruns = 0;
  private starved = false;
  /** Set when the first non-silent sample of a turn is written out; read and reset by the worklet. */
  firstAudible = false;
  /** Where in that quantum the first non-silent sample sits. */
  firstAudibleIndex = 0;
  private audibleSeen = false;

  constructor(
    public prebufferSamples: number,
    fadeSamples = 128,
  ) {
    this.fadeLength = fadeSamples;
  }

  push(samples: Float32Array): void {
    if (!samples.length) return;
    this.chunks.push(samples);
    this.available += samples.length;
    this.samplesQueued += samples.length;
    if (this.state === "idle") this.state = "buffering";
  }

  /** No more audio is coming for this turn: play out what is queued, then go idle without an underrun. */
  end(): void {
    if (this.state === "buffering") this.state = "draining";
    else if (this.state === "playing") this.state = "draining";
  }

  /** Stop at once with a few-millisecond fade so the cut does not click. */
  flush(): void {
    this.fadeLeft = this.state === "playing" || this.state === "draining" ? this.fadeLength : 0;
    const keep = Math.min(this.fadeLeft, this.available);
    const tail = new Float32Array(keep);
    this.read(tail, 0, keep);
    this.chunks = keep ? [tail] : [];
    this.offset = 0;
    this.available = keep;
    this.fadeLeft = keep;
    this.state = keep ? "draining" : "idle";
    this.starved = false;
  }

  /** Fill `out` (one render quantum) and return it; silence where nothing is available. */
  pull(out: Float32Array): Float32Array {
    out.fill(0);
    if (this.state === "idle") return out;
    if (this.state === "buffering" && this.available < this.prebufferSamples) return out;
    if (this.state === "buffering") this.state = "playing";
    const count = Math.min(out.length, this.available);
    this.read(out, 0, count);
    if (this.fadeLeft > 0) this.applyFade(out, count);
    this.samplesPlayed += count;
    if (!this.audibleSeen) {
      const index = out.findIndex((s) => s !== 0);
      if (index >= 0) {
        this.audibleSeen = true;
        this.firstAudible = true;
        this.firstAudibleIndex = index;
      }
    }
    if (count < out.length) this.onShortfall();
    else this.starved = false;
    return out;
  }

  /** Start counting a new turn's first audible sample again. */
  newTurn(): void {
    this.audibleSeen = false;
    this.firstAudible = false;
  }

  stats(): QueueStats {
    return {
      samplesQueued: this.samplesQueued,
      samplesPlayed: this.samplesPlayed,
      underruns: this.underruns,
      state: this.state,
    };
  }

  private onShortfall(): void {
    if (this.state === "draining") {
      this.state = "idle";
      this.fadeLeft = 0;
      return;
    }
    if (!this.starved) this.underruns += 1; // one underrun per gap, not per quantum
    this.starved = true;
    this.state = "buffering";
  }

  private applyFade(out: Float32Array, count: number): void {
    for (let i = 0; i < count; i++) {
      out[i] *= Math.max(0, this.fadeLeft - i) / this.fadeLength;
    }
    this.fadeLeft = Math.max(0, this.fadeLeft - count);
  }

  private read(out: Float32Array, at: number, count: number): void {
    let written = 0;
    while (written < count) {
      const head = this.chunks[0];
      const take = Math.min(count - written, head.length - this.offset);
      out.set(head.subarray(this.offset, this.offset + take), at + written);
      written += take;
      this.offset += take;
      if (this.offset === head.length) {
        this.chunks.shift();
        this.offset = 0;
      }
    }
    this.available -= count;
  }
}

/** Messages the page posts to the worklet (shared by player.ts and worklet.ts). */
export type Command =
  | { type: "push"; samples: Float32Array }
  | { type: "end" }
  | { type: "flush" }
  | { type: "turn" }
  | { type: "prebuffer"; ms: number };
