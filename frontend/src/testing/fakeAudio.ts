// A Web Audio stand-in for Vitest: an AudioContext on a clock the test moves, whose worklet node runs
// the real PlayerEngine (the code of the audio thread), so tests hear what a browser would play.
import { PlayerEngine, type WorkletMessage } from "../engine";
import type { Command } from "../queue";

export const QUANTUM = 128;

export class FakeClock {
  ms = 1000;
  advance(ms: number): void {
    this.ms += ms;
  }
}

export class FakeAudio {
  readonly clock = new FakeClock();
  contexts: FakeAudioContext[] = [];
  /** Milliseconds the browser spends making an AudioContext (inside the click that asks for it). */
  creationMs = 0;
  /** Milliseconds a suspended context takes to start running after resume(). */
  resumeMs = 0;
  /** Contexts start suspended, as browsers make them before any click. */
  startSuspended = true;

  install(): void {
    const audio = this;
    vi.spyOn(performance, "now").mockImplementation(() => audio.clock.ms);
    class Context extends FakeAudioContext {
      constructor(options?: { sampleRate?: number }) {
        super(audio, options?.sampleRate ?? 48000);
        audio.clock.advance(audio.creationMs);
        audio.contexts.push(this);
      }
    }
    class Node extends FakeWorkletNode {
      constructor(context: FakeAudioContext) {
        super(context);
      }
    }
    vi.stubGlobal("AudioContext", Context);
    vi.stubGlobal("AudioWorkletNode", Node);
  }

  get context(): FakeAudioContext {
    return this.contexts[this.contexts.length - 1];
  }

  /** Let promises settle (the worklet module "loads" in a microtask). */
  async settle(): Promise<void> {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  }

  /** Move the clock on by `ms`, rendering whatever the worklet plays meanwhile. */
  run(ms: number): void {
    const context = this.context;
    if (!context || context.state !== "running" || !context.node) {
      this.clock.advance(ms);
      return;
    }
    const quantumMs = (QUANTUM / context.sampleRate) * 1000;
    for (let left = ms; left > 0; left -= quantumMs) {
      context.node.render();
      this.clock.advance(Math.min(quantumMs, left));
    }
  }
}

export class FakeAudioContext {
  state: "suspended" | "running" = "suspended";
  currentTime = 0;
  baseLatency = 0;
  outputLatency = 0;
  node: FakeWorkletNode | null = null;
  readonly destination = {};
  readonly audioWorklet = { addModule: async () => undefined };
  private startedAt: number;

  constructor(
    private audio: FakeAudio,
    readonly sampleRate: number,
  ) {
    this.startedAt = audio.clock.ms;
    if (!audio.startSuspended) this.state = "running";
  }

  resume(): Promise<void> {
    this.audio.clock.advance(this.audio.resumeMs);
    this.state = "running";
    return Promise.resolve();
  }

  getOutputTimestamp() {
    return { contextTime: this.currentTime, performanceTime: this.audio.clock.ms };
  }

  createGain() {
    return { gain: { value: 1, setTargetAtTime: () => undefined }, connect: () => undefined };
  }

  createBuffer() {
    return {};
  }

  createBufferSource() {
    return { buffer: null, connect: () => undefined, start: () => undefined };
  }

  tick(): void {
    this.currentTime += QUANTUM / this.sampleRate;
  }

  get since(): number {
    return this.audio.clock.ms - this.startedAt;
  }
}

export class FakeWorkletNode {
  readonly port: { postMessage: (command: Command) => void; onmessage: ((event: { data: WorkletMessage }) => void) | null };
  readonly engine: PlayerEngine;
  readonly commands: Command[] = [];
  /** Everything the engine played, sample by sample. */
  readonly output: number[] = [];

  constructor(private context: FakeAudioContext) {
    context.node = this;
    this.engine = new PlayerEngine(context.sampleRate, (message) => this.port.onmessage?.({ data: message }));
    this.port = {
      onmessage: null,
      postMessage: (command: Command) => {
        this.commands.push(command);
        this.engine.command(command, context.currentTime);
      },
    };
  }

  connect(): void {}

  render(): void {
    const out = new Float32Array(QUANTUM);
    this.engine.render(out, this.context.currentTime);
    this.output.push(...out);
    this.context.tick();
  }
}

/** Base64 of `ms` of s16le PCM at `rate`, all at one non-silent level (or silence). */
export function pcmBase64(ms: number, rate = 24000, level = 8000): string {
  const samples = Math.round((ms / 1000) * rate);
  const bytes = new Uint8Array(samples * 2);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < samples; i++) view.setInt16(i * 2, level, true);
  let binary = "";
  bytes.forEach((b) => (binary += String.fromCharCode(b)));
  return btoa(binary);
}
