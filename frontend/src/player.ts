// The gapless PCM player: an AudioWorklet queue fed from the socket's audio events (or a stored WAV).
//
// The AudioContext is created at the PCM rate the server announces (pcm_24000 → 24 kHz), so samples go
// to the worklet untouched and the browser's own high-quality resampler converts to the device rate.
// Where a browser refuses that rate, the context runs at its default rate and LinearResampler converts.
import { base64ToBytes, LinearResampler, Pcm16Decoder } from "./pcm";
import type { Command, QueueState } from "./queue";

/** Live player counters; exposed to tests and debugging as `window.__voicechat.player` (see main.tsx). */
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
}

export const counters: PlayerCounters = {
  samplesQueued: 0,
  samplesPlayed: 0,
  underruns: 0,
  state: "locked",
  contextRate: 0,
  pcmRate: 24000,
  firstAudibleMs: null,
  turnUnderruns: 0,
};

export interface TurnSummary {
  firstAudibleMs: number | null;
  underruns: number;
}

type WorkletMessage =
  | { type: "stats"; samplesQueued: number; samplesPlayed: number; underruns: number; state: QueueState }
  | { type: "audible"; time: number };

/** Default start-up buffer: enough to absorb network jitter, small enough not to be heard as delay. */
export const DEFAULT_PREBUFFER_MS = 80;

export class Player {
  private context: AudioContext | null = null;
  private gain: GainNode | null = null;
  private node: AudioWorkletNode | null = null;
  private ready: Promise<void> | null = null;
  private pending: Command[] = []; // commands sent before the worklet module finished loading
  private decoder = new Pcm16Decoder();
  private resampler: LinearResampler | null = null;
  private sourceRate = 24000; // rate of the samples being pushed now (live PCM or a replayed WAV)
  private liveRate = 24000; // rate the server announced for live audio
  private turnStartedAt: number | null = null;
  private underrunsAtTurnStart = 0;
  private volume = 1;
  private samplesPosted = 0; // pushed to the worklet; its idle report counts once it has seen them all
  private summaries = new Map<number, TurnSummary>(); // what finished turns sounded like, until reported
  /** Increases with every startTurn(); identifies a turn's figures for its playback_report. */
  turnSerial = 0;
  private idleWaiters: (() => void)[] = [];
  private listeners = new Set<(state: PlayerCounters["state"]) => void>();

  constructor(
    private workletUrl: string,
    private prebufferMs = DEFAULT_PREBUFFER_MS,
  ) {}

  /** The live audio format from conversation_initiation_metadata. */
  setLiveRate(rate: number): void {
    this.liveRate = rate;
    counters.pcmRate = rate;
    this.useSourceRate(rate);
  }

  /** Create or resume the AudioContext; call it inside a click or key handler (autoplay rules, iOS). */
  unlock(): Promise<void> {
    if (!this.context) {
      const context = createContext(this.liveRate);
      this.context = context;
      primeSilence(context);
      counters.contextRate = context.sampleRate;
      this.resampler = new LinearResampler(this.sourceRate, context.sampleRate);
      this.gain = context.createGain();
      this.gain.gain.value = this.volume;
      this.gain.connect(context.destination);
      this.ready = this.attach(context, this.gain).catch((error: unknown) => {
        console.error("voicechat: the audio worklet did not load", error);
      });
    }
    if (this.context.state !== "running") void this.context.resume();
    return this.ready ?? Promise.resolve();
  }

  get unlocked(): boolean {
    return this.context !== null;
  }

  /** A new turn starts now (the Send action): first-audible time and underruns are measured from here. */
  startTurn(): void {
    this.summaries.set(this.turnSerial, this.turnSummary(this.turnSerial));
    if (this.summaries.size > 8) this.summaries.delete(Math.min(...this.summaries.keys()));
    this.turnSerial += 1;
    this.turnStartedAt = performance.now();
    this.underrunsAtTurnStart = counters.underruns;
    counters.firstAudibleMs = null;
    counters.turnUnderruns = 0;
    this.decoder.reset();
    this.useSourceRate(this.liveRate);
    this.post({ type: "turn" });
  }

  pushBase64(base64: string): void {
    this.pushBytes(base64ToBytes(base64));
  }

  pushBytes(bytes: Uint8Array): void {
    if (!this.context || !this.resampler) return; // never unlocked: nothing may sound
    const samples = this.resampler.process(this.decoder.decode(bytes));
    if (samples.length) this.post({ type: "push", samples });
  }

  /** No more audio for this turn: play out the queue, then go idle (no underrun is counted). */
  end(): void {
    this.post({ type: "end" });
  }

  /** Silence now, with a few-ms fade; anything still queued is dropped. */
  flush(): void {
    this.pending = this.pending.filter((c) => c.type !== "push" && c.type !== "end");
    this.post({ type: "flush" });
    this.decoder.reset();
  }

  setVolume(value: number): void {
    this.volume = value;
    if (this.gain && this.context) this.gain.gain.setTargetAtTime(value, this.context.currentTime, 0.01);
  }

  /** What the listener heard of turn `serial` so far: for playback_report. */
  turnSummary(serial: number): TurnSummary {
    if (serial !== this.turnSerial) return this.summaries.get(serial) ?? { firstAudibleMs: null, underruns: 0 };
    return { firstAudibleMs: counters.firstAudibleMs, underruns: counters.underruns - this.underrunsAtTurnStart };
  }

  /** Resolves once the queue has played out (or at once when nothing plays). */
  whenIdle(): Promise<void> {
    if (this.idle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private idle(): boolean {
    if (!this.context) return true;
    return counters.state === "idle" && counters.samplesQueued === this.samplesPosted && !this.pending.length;
  }

  /** Called with the queue state whenever it changes. Returns the unsubscribe function. */
  subscribe(listener: (state: PlayerCounters["state"]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Play a stored WAV (16-bit mono PCM) through the same queue: a replay never calls the vendor. */
  async playWav(data: ArrayBuffer): Promise<void> {
    const { rate, start, end } = parseWav(data);
    this.flush();
    this.startTurn();
    this.useSourceRate(rate);
    for (let at = start; at < end; at += 48000) {
      this.pushBytes(new Uint8Array(data, at, Math.min(48000, end - at)));
    }
    this.end();
  }

  private useSourceRate(rate: number): void {
    this.sourceRate = rate;
    if (this.context) this.resampler = new LinearResampler(rate, this.context.sampleRate);
  }

  private post(command: Command): void {
    if (!this.node) {
      if (this.context) this.pending.push(command); // the module is still loading: keep the order
      return;
    }
    if (command.type === "push") {
      this.samplesPosted += command.samples.length;
      this.node.port.postMessage(command, [command.samples.buffer]);
    } else {
      this.node.port.postMessage(command);
    }
  }

  private async attach(context: AudioContext, output: AudioNode): Promise<void> {
    await context.audioWorklet.addModule(this.workletUrl);
    const node = new AudioWorkletNode(context, "pcm-player", { numberOfInputs: 0, outputChannelCount: [1] });
    node.port.onmessage = (event: MessageEvent<WorkletMessage>) => this.onWorkletMessage(event.data);
    node.connect(output);
    this.node = node;
    this.post({ type: "prebuffer", ms: this.prebufferMs });
    this.pending.splice(0).forEach((command) => this.post(command));
  }

  private onWorkletMessage(message: WorkletMessage): void {
    if (message.type === "stats") {
      const changed = message.state !== counters.state;
      counters.samplesQueued = message.samplesQueued;
      counters.samplesPlayed = message.samplesPlayed;
      counters.underruns = message.underruns;
      counters.state = message.state;
      counters.turnUnderruns = message.underruns - this.underrunsAtTurnStart;
      if (this.idle()) this.idleWaiters.splice(0).forEach((resolve) => resolve());
      if (changed) this.listeners.forEach((listener) => listener(message.state));
    } else if (message.type === "audible" && this.turnStartedAt !== null && this.context) {
      counters.firstAudibleMs = Math.max(0, Math.round(outputTimeOf(this.context, message.time) - this.turnStartedAt));
      this.turnStartedAt = null;
    }
  }
}

/** When (performance.now() clock) the sample rendered at context time `time` leaves the speakers. */
export function outputTimeOf(context: AudioContext, time: number): number {
  const stamp = context.getOutputTimestamp?.();
  if (stamp?.contextTime && stamp.performanceTime) {
    return stamp.performanceTime + (time - stamp.contextTime) * 1000;
  }
  // No output timestamp (some browsers, fake devices): the render time plus the declared latencies.
  const latency = (context.baseLatency ?? 0) + (context.outputLatency ?? 0);
  return performance.now() + (time - context.currentTime + latency) * 1000;
}

function createContext(rate: number): AudioContext {
  try {
    return new AudioContext({ sampleRate: rate, latencyHint: "interactive" });
  } catch {
    return new AudioContext({ latencyHint: "interactive" }); // the worklet input is resampled instead
  }
}

function primeSilence(context: AudioContext): void {
  // iOS Safari only starts output once something has played inside the user gesture: 50 ms of silence.
  const buffer = context.createBuffer(1, Math.max(1, Math.round(context.sampleRate * 0.05)), context.sampleRate);
  const source = context.createBufferSource();
  source.buffer = buffer;
  source.connect(context.destination);
  source.start();
}

/** The rate and the byte span of the samples in a 16-bit mono PCM WAV file. */
export function parseWav(data: ArrayBuffer): { rate: number; start: number; end: number } {
  const view = new DataView(data);
  let rate = 24000;
  let at = 12;
  while (at + 8 <= view.byteLength) {
    const id = String.fromCharCode(view.getUint8(at), view.getUint8(at + 1), view.getUint8(at + 2), view.getUint8(at + 3));
    const size = view.getUint32(at + 4, true);
    if (id === "fmt ") rate = view.getUint32(at + 12, true);
    if (id === "data") return { rate, start: at + 8, end: Math.min(view.byteLength, at + 8 + size) };
    at += 8 + size + (size % 2);
  }
  return { rate, start: Math.min(44, view.byteLength), end: view.byteLength };
}
