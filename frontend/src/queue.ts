// The sample queue the AudioWorklet plays from: gapless, with a start-up buffer, underrun counting
// and a short fade on flush. Pure logic, so it is unit-tested outside the audio thread.

export type QueueState = "idle" | "buffering" | "playing" | "draining";

export interface QueueStats {
  samplesQueued: number;
  samplesPlayed: number;
  underruns: number;
  state: QueueState;
  /** The turn whose samples play now (see newTurn), and how many of its samples have been played. */
  turn: number;
  turnPlayed: number;
}

export class SampleQueue {
  private chunks: Float32Array[] = [];
  private offset = 0; // read position inside chunks[0]
  private available = 0;
  private fadeLeft = 0; // samples of fade-out still to play after a flush
  private fadeLength: number;
  state: QueueState = "idle";
  samplesQueued = 0;
  samplesPlayed = 0;
  underruns = 0;
  private starved = false;
  /** Playing the fade-out of a flush: nothing else shares these quanta, and what comes after buffers anew. */
  private fading = false;
  private endedWhileFading = false;
  /** Set when the first non-silent sample of a turn is written out; read and reset by the worklet. */
  firstAudible = false;
  /** Where in that quantum the first non-silent sample sits. */
  firstAudibleIndex = 0;
  private audibleSeen = false;
  /** Samples queued before the current turn began (a flushed reply's fade-out): never the turn's sound. */
  private earlier = 0;
  turn = 0;
  turnPlayed = 0;

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
    if (this.fading) this.endedWhileFading = true;
    else if (this.state === "buffering" || this.state === "playing") this.state = "draining";
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
    this.earlier = Math.min(this.earlier, keep);
    this.fadeLeft = keep;
    this.state = keep ? "draining" : "idle";
    this.fading = keep > 0;
    this.endedWhileFading = false;
    this.starved = false;
  }

  /** Fill `out` (one render quantum) and return it; silence where nothing is available. */
  pull(out: Float32Array): Float32Array {
    out.fill(0);
    if (this.fading) return this.pullFade(out);
    if (this.state === "idle") return out;
    if (this.state === "buffering" && this.available < this.prebufferSamples) return out;
    if (this.state === "buffering") this.state = "playing";
    const count = Math.min(out.length, this.available);
    this.read(out, 0, count);
    this.count(out, count);
    if (count < out.length) this.onShortfall();
    else this.starved = false;
    return out;
  }

  /** The fade-out after a flush; then whatever was pushed since (a new turn) fills its start-up buffer. */
  private pullFade(out: Float32Array): Float32Array {
    const count = Math.min(out.length, this.fadeLeft, this.available);
    this.read(out, 0, count);
    for (let i = 0; i < count; i++) out[i] *= (this.fadeLeft - i) / this.fadeLength;
    this.fadeLeft -= count;
    this.count(out, count);
    if (this.fadeLeft === 0 || count === 0) {
      this.fading = false;
      this.fadeLeft = 0;
      this.state = !this.available ? "idle" : this.endedWhileFading ? "draining" : "buffering";
      this.endedWhileFading = false;
    }
    return out;
  }

  /** Book `count` samples just written to `out`: totals, the turn's position, its first audible sample. */
  private count(out: Float32Array, count: number): void {
    this.samplesPlayed += count;
    const earlier = Math.min(this.earlier, count);
    this.earlier -= earlier;
    this.turnPlayed += count - earlier;
    if (!this.audibleSeen && count > earlier) {
      const index = out.subarray(earlier, count).findIndex((s) => s !== 0);
      if (index >= 0) {
        this.audibleSeen = true;
        this.firstAudible = true;
        this.firstAudibleIndex = earlier + index;
      }
    }
  }

  /** Samples pushed from now on belong to turn `turn`: its first audible sample and its position count
   * from here, and whatever is still queued (the fade-out of a flushed reply) belongs to the one before. */
  newTurn(turn = this.turn + 1): void {
    this.turn = turn;
    this.turnPlayed = 0;
    this.earlier = this.available;
    this.audibleSeen = false;
    this.firstAudible = false;
  }

  stats(): QueueStats {
    return {
      samplesQueued: this.samplesQueued,
      samplesPlayed: this.samplesPlayed,
      underruns: this.underruns,
      state: this.state,
      turn: this.turn,
      turnPlayed: this.turnPlayed,
    };
  }

  private onShortfall(): void {
    if (this.state === "draining") {
      this.state = "idle";
      return;
    }
    if (!this.starved) this.underruns += 1; // one underrun per gap, not per quantum
    this.starved = true;
    this.state = "buffering";
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
  | { type: "turn"; turn: number }
  | { type: "prebuffer"; ms: number };
