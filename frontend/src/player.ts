// The gapless PCM player: an AudioWorklet fed from the socket's audio events (or a stored WAV).
import { base64ToBytes, LinearResampler, Pcm16Decoder } from "./pcm";
import type { QueueState } from "./queue";

export interface PlayerCounters {
  samplesQueued: number;
  samplesPlayed: number;
  underruns: number;
  state: QueueState | "locked";
  contextRate: number;
  lastFirstAudibleMs: number | null;
}

/** Test hook: everything the browser tests read lives here, updated live. */
export const counters: PlayerCounters = {
  samplesQueued: 0,
  samplesPlayed: 0,
  underruns: 0,
  state: "locked",
  contextRate: 0,
  lastFirstAudibleMs: null,
};

export class Player {
  private context: AudioContext | null = null;
  private node: AudioWorkletNode | null = null;
  private ready: Promise<void> | null = null;
  private decoder = new Pcm16Decoder();
  private resampler: LinearResampler | null = null;
  private pcmRate = 24000;
  private turnStartedAt: number | null = null;
  private underrunsAtTurnStart = 0;
  private idleWaiters: (() => void)[] = [];
  onAudible: ((ms: number) => void) | null = null;

  constructor(
    private workletUrl: string,
    private prebufferMs = 80,
  ) {}

  setFormat(pcmRate: number): void {
    this.pcmRate = pcmRate;
    this.resampler = this.context ? new LinearResampler(pcmRate, this.context.sampleRate) : null;
  }

  /** Create or resume the AudioContext; call it inside a click or key handler (autoplay rules, iOS). */
  unlock(): Promise<void> {
    if (!this.context) {
      try {
        this.context = new AudioContext({ sampleRate: this.pcmRate, latencyHint: "interactive" });
      } catch {
        this.context = new AudioContext({ latencyHint: "interactive" });
      }
      this.primeSilence(this.context);
      this.resampler = new LinearResampler(this.pcmRate, this.context.sampleRate);
      counters.contextRate = this.context.sampleRate;
      this.ready = this.attach(this.context);
    }
    void this.context.resume();
    return this.ready ?? Promise.resolve();
  }

  get unlocked(): boolean {
    return this.node !== null;
  }

  /** A new turn starts now (the Send action): first-audible time is measured from here. */
  startTurn(): void {
    this.turnStartedAt = performance.now();
    this.underrunsAtTurnStart = counters.underruns;
    this.decoder.reset();
    this.node?.port.postMessage({ type: "turn" });
  }

  pushBase64(base64: string): void {
    this.pushBytes(base64ToBytes(base64));
  }

  pushBytes(bytes: Uint8Array): void {
    if (!this.node || !this.resampler) return;
    const samples = this.resampler.process(this.decoder.decode(bytes));
    this.node.port.postMessage({ type: "push", samples }, [samples.buffer]);
  }

  /** No more audio for this turn: play out the queue. */
  end(): void {
    this.node?.port.postMessage({ type: "end" });
  }

  /** Silence now, with a few-ms fade. */
  flush(): void {
    this.node?.port.postMessage({ type: "flush" });
    this.decoder.reset();
  }

  setVolume(value: number): void {
    this.node?.port.postMessage({ type: "volume", value });
  }

  turnUnderruns(): number {
    return counters.underruns - this.underrunsAtTurnStart;
  }

  /** Resolves once the queue has played out (or immediately when nothing is playing). */
  whenIdle(): Promise<void> {
    if (counters.state === "idle" || counters.state === "locked") return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Play a stored WAV (16-bit mono PCM) through the same queue: replay never calls the vendor. */
  async playWav(data: ArrayBuffer): Promise<void> {
    const view = new DataView(data);
    const rate = view.getUint32(24, true);
    const start = findDataChunk(view);
    this.flush();
    this.setFormat(rate);
    this.startTurn();
    for (let at = start; at < data.byteLength; at += 48000) {
      this.pushBytes(new Uint8Array(data, at, Math.min(48000, data.byteLength - at)));
    }
    this.end();
  }

  private async attach(context: AudioContext): Promise<void> {
    await context.audioWorklet.addModule(this.workletUrl);
    const node = new AudioWorkletNode(context, "pcm-player", { outputChannelCount: [1] });
    node.port.onmessage = (event) => this.onWorkletMessage(event.data);
    node.port.postMessage({ type: "prebuffer", ms: this.prebufferMs });
    node.connect(context.destination);
    this.node = node;
  }

  private onWorkletMessage(message: { type: string; [key: string]: unknown }): void {
    if (message.type === "stats") {
      Object.assign(counters, {
        samplesQueued: message.samplesQueued,
        samplesPlayed: message.samplesPlayed,
        underruns: message.underruns,
        state: message.state,
      });
      if (message.state === "idle") this.idleWaiters.splice(0).forEach((resolve) => resolve());
    } else if (message.type === "audible" && this.turnStartedAt !== null) {
      // The sample left the worklet now; the device adds its output latency before it is heard.
      const latency = (this.context?.outputLatency ?? 0) * 1000;
      const ms = Math.round(performance.now() - this.turnStartedAt + latency);
      counters.lastFirstAudibleMs = ms;
      this.turnStartedAt = null;
      this.onAudible?.(ms);
    }
  }

  private primeSilence(context: AudioContext): void {
    // iOS only starts output after something has played inside the gesture: play 50 ms of silence.
    const buffer = context.createBuffer(1, Math.round(context.sampleRate * 0.05), context.sampleRate);
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    source.start();
  }
}

function findDataChunk(view: DataView): number {
  let at = 12;
  while (at + 8 <= view.byteLength) {
    const id = String.fromCharCode(view.getUint8(at), view.getUint8(at + 1), view.getUint8(at + 2), view.getUint8(at + 3));
    const size = view.getUint32(at + 4, true);
    if (id === "data") return at + 8;
    at += 8 + size;
  }
  return 44;
}
