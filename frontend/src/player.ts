// The gapless PCM player: an AudioWorklet queue fed from the socket's audio events (or a stored WAV).
//
// The AudioContext is created with the page at the PCM rate the server will announce (pcm_24000 →
// 24 kHz), so samples go to the worklet untouched and the browser's own resampler converts to the device
// rate; where a browser refuses that rate, the context runs at its default rate and LinearResampler
// converts. Browsers keep a context made before any click suspended: unlock() resumes it inside the
// first click or key press, so nothing is created or loaded at the moment the user presses Send.
//
// Everything played belongs to a *turn* (a live reply, a greeting, a replay). The worklet counts each
// turn's own samples, so the position the page reads (for word highlighting and progress) is what the
// listener has heard of that turn, never wall-clock time and never the fade-out of the turn before.
import { counters, type PlayerCounters } from "./counters";
import type { WorkletMessage } from "./engine";
import { base64ToBytes, LinearResampler, Pcm16Decoder } from "./pcm";
import type { Command } from "./queue";

export interface TurnSummary {
  firstAudibleMs: number | null;
  underruns: number;
}

export interface TurnOptions {
  /** Measure first_audible_ms from now (a Send action); greetings and replays are not measured. */
  measure?: boolean;
  /** What the turn plays (a message id), when known; see label(). */
  label?: string | null;
  /** Where in its audio the turn starts (a replay that resumes or seeks), in ms. */
  offsetMs?: number;
}

/** What is playing, for the page: which turn, what it is, and whether it is sounding right now. */
export interface NowPlaying {
  turn: number;
  label: string | null;
  state: PlayerCounters["state"];
  /** The turn's audio is reaching the speakers (not waiting for its start-up buffer or refilling one). */
  audible: boolean;
  /** `state` comes from the worklet's report on this turn (not on the one before it). */
  reported: boolean;
}

/** Default start-up buffer: enough to absorb network jitter, small enough not to be heard as delay. */
export const DEFAULT_PREBUFFER_MS = 80;

export class Player {
  private context: AudioContext | null = null;
  private gain: GainNode | null = null;
  private node: AudioWorkletNode | null = null;
  private ready: Promise<void> = Promise.resolve();
  private primed = false;
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
  /** Increases with every startTurn(); identifies a turn in reports, positions and labels. */
  turnSerial = 0;
  private turnLabel: string | null = null;
  private turnOffsetMs = 0;
  private lastStats: { turn: number; turnPlayed: number; time: number } | null = null;
  private idleWaiters: (() => void)[] = [];
  private listeners = new Set<() => void>();

  constructor(
    private workletUrl: string,
    private prebufferMs = DEFAULT_PREBUFFER_MS,
  ) {}

  /** Create the AudioContext and load the worklet now (with the page), ahead of any reply. */
  prepare(rate = this.liveRate): void {
    if (this.context || typeof AudioContext === "undefined") return;
    this.liveRate = rate;
    counters.pcmRate = rate;
    const context = createContext(rate);
    this.context = context;
    counters.contextRate = context.sampleRate;
    this.resampler = new LinearResampler(this.sourceRate, context.sampleRate);
    this.gain = context.createGain();
    this.gain.gain.value = this.volume;
    this.gain.connect(context.destination);
    this.ready = this.attach(context, this.gain).catch((error: unknown) => {
      console.error("voicechat: the audio worklet did not load", error);
    });
  }

  /** The live audio format from conversation_initiation_metadata. */
  setLiveRate(rate: number): void {
    this.liveRate = rate;
    counters.pcmRate = rate;
    this.useSourceRate(rate);
  }

  /** Resume the AudioContext; call it inside a click or key handler (autoplay rules, iOS). */
  unlock(): Promise<void> {
    this.prepare();
    const context = this.context;
    if (!context) return Promise.resolve();
    if (!this.primed) {
      this.primed = true;
      primeSilence(context);
    }
    if (context.state !== "running") void context.resume();
    return this.ready;
  }

  /** Sound can play now (the context runs); until then pushed audio waits in the queue. */
  get unlocked(): boolean {
    return this.context?.state === "running";
  }

  get available(): boolean {
    return this.context !== null;
  }

  /** A new turn starts now: what is pushed from here on is its audio. Returns its serial. */
  startTurn({ measure = false, label = null, offsetMs = 0 }: TurnOptions = {}): number {
    this.summaries.set(this.turnSerial, this.turnSummary(this.turnSerial));
    if (this.summaries.size > 8) this.summaries.delete(Math.min(...this.summaries.keys()));
    this.turnSerial += 1;
    this.turnLabel = label;
    this.turnOffsetMs = offsetMs;
    this.turnStartedAt = measure ? performance.now() : null;
    this.underrunsAtTurnStart = counters.underruns;
    counters.firstAudibleMs = null;
    counters.turnUnderruns = 0;
    counters.turnPlayedMs = 0;
    this.decoder.reset();
    this.useSourceRate(this.liveRate);
    this.post({ type: "turn", turn: this.turnSerial });
    this.notify();
    return this.turnSerial;
  }

  /** Name what turn `serial` plays once it is known (a live reply's id arrives after the Send). */
  label(serial: number, label: string | null): void {
    if (serial !== this.turnSerial || this.turnLabel === label) return;
    this.turnLabel = label;
    this.notify();
  }

  pushBase64(base64: string): void {
    this.pushBytes(base64ToBytes(base64));
  }

  pushBytes(bytes: Uint8Array): void {
    if (!this.context || !this.resampler) return; // no Web Audio: nothing may sound
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

  /** Resolves once the queue has played out (or at once when nothing can play). */
  whenIdle(): Promise<void> {
    if (this.idle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private idle(): boolean {
    if (!this.context) return true;
    return counters.state === "idle" && counters.samplesQueued === this.samplesPosted && !this.pending.length;
  }

  /** Called whenever the queue state or the current turn changes. Returns the unsubscribe function. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  nowPlaying(): NowPlaying {
    // Idle by the worklet's last word but with samples still on their way to it: not idle yet.
    const state = counters.state === "idle" && !this.idle() ? "buffering" : counters.state;
    const current = this.lastStats?.turn === this.turnSerial;
    // Draining right after a Send may be the old reply's fade-out: audible once this turn's own samples play.
    const audible = current && (this.lastStats?.turnPlayed ?? 0) > 0 && (state === "playing" || state === "draining");
    return { turn: this.turnSerial, label: this.turnLabel, state, audible, reported: current };
  }

  /**
   * How far into turn `serial`'s audio the listener is now, in ms (with the turn's start offset): the
   * worklet's count of the turn's played samples, moved on by the audio clock since it was counted and
   * back by the output latency. Null when that turn is not the one playing.
   */
  positionMs(serial = this.turnSerial): number | null {
    const stats = this.lastStats;
    if (serial !== this.turnSerial) return null;
    if (!stats || stats.turn !== serial || !this.context) return this.turnOffsetMs;
    const rate = this.context.sampleRate;
    let samples = stats.turnPlayed;
    if (counters.state === "playing" || counters.state === "draining") {
      const ahead = (outputContextTime(this.context) - stats.time) * rate; // < 0: still on its way out
      samples += Math.min(ahead, REPORT_SPAN_SECONDS * rate);
    } else {
      samples -= outputLatencySeconds(this.context) * rate; // the last samples counted may still be sounding
    }
    return this.turnOffsetMs + (Math.max(0, samples) / rate) * 1000;
  }

  /** Play a stored WAV (16-bit mono PCM) through the same queue: a replay never calls the vendor. */
  playWav(data: ArrayBuffer, { label = null, offsetMs = 0 }: { label?: string | null; offsetMs?: number } = {}): number {
    const { rate, start, end } = parseWav(data);
    this.flush();
    const serial = this.startTurn({ label, offsetMs });
    this.useSourceRate(rate);
    const skip = Math.min(end - start, Math.round((offsetMs / 1000) * rate) * 2);
    for (let at = start + skip; at < end; at += 48000) {
      this.pushBytes(new Uint8Array(data, at, Math.min(48000, end - at)));
    }
    this.end();
    return serial;
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
    this.post({ type: "turn", turn: this.turnSerial }); // the worklet starts counting the current turn
    this.pending.splice(0).forEach((command) => this.post(command));
  }

  private onWorkletMessage(message: WorkletMessage): void {
    if (message.type === "stats") {
      const changed = message.state !== counters.state || message.turn !== this.lastStats?.turn;
      counters.samplesQueued = message.samplesQueued;
      counters.samplesPlayed = message.samplesPlayed;
      counters.underruns = message.underruns;
      counters.state = message.state;
      counters.turnUnderruns = message.underruns - this.underrunsAtTurnStart;
      this.lastStats = { turn: message.turn, turnPlayed: message.turnPlayed, time: message.time };
      if (message.turn === this.turnSerial && this.context) counters.turnPlayedMs = Math.round((message.turnPlayed / this.context.sampleRate) * 1000);
      if (this.idle()) this.idleWaiters.splice(0).forEach((resolve) => resolve());
      if (changed) this.notify();
    } else if (message.type === "audible" && message.turn === this.turnSerial && this.turnStartedAt !== null && this.context) {
      counters.firstAudibleMs = Math.max(0, Math.round(outputTimeOf(this.context, message.time) - this.turnStartedAt));
      this.turnStartedAt = null;
    }
  }

  private notify(): void {
    this.listeners.forEach((listener) => listener());
  }
}

/** The worklet reports every ~40 ms; never extrapolate further than a few reports past the last one. */
const REPORT_SPAN_SECONDS = 0.15;

/** When (performance.now() clock) the sample rendered at context time `time` leaves the speakers. */
export function outputTimeOf(context: AudioContext, time: number): number {
  const stamp = context.getOutputTimestamp?.();
  if (stamp?.contextTime && stamp.performanceTime) {
    return stamp.performanceTime + (time - stamp.contextTime) * 1000;
  }
  // No output timestamp (some browsers, fake devices): the render time plus the declared latencies.
  return performance.now() + (time - context.currentTime + outputLatencySeconds(context)) * 1000;
}

/** The context time of the sample leaving the speakers right now. */
export function outputContextTime(context: AudioContext): number {
  const stamp = context.getOutputTimestamp?.();
  if (stamp?.contextTime && stamp.performanceTime) {
    return stamp.contextTime + (performance.now() - stamp.performanceTime) / 1000;
  }
  return context.currentTime - outputLatencySeconds(context);
}

function outputLatencySeconds(context: AudioContext): number {
  return (context.baseLatency ?? 0) + (context.outputLatency ?? 0);
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

/** Duration of a 16-bit mono PCM WAV file in ms. */
export function wavDurationMs(data: ArrayBuffer): number {
  const { rate, start, end } = parseWav(data);
  return ((end - start) / 2 / rate) * 1000;
}
