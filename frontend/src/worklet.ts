// The AudioWorklet processor: plays queued PCM gaplessly and reports counters to the page.
import { SampleQueue } from "./queue";

declare const sampleRate: number;
declare const currentTime: number;
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
  constructor(options?: unknown);
}
declare function registerProcessor(name: string, ctor: unknown): void;

type Command =
  | { type: "push"; samples: Float32Array }
  | { type: "end" }
  | { type: "flush" }
  | { type: "turn" }
  | { type: "volume"; value: number }
  | { type: "prebuffer"; ms: number };

class PcmPlayerProcessor extends AudioWorkletProcessor {
  private queue = new SampleQueue(Math.round(sampleRate * 0.08), Math.round(sampleRate * 0.005));
  private volume = 1;
  private frames = 0;
  private lastState = "idle";

  constructor() {
    super();
    this.port.onmessage = (event: MessageEvent<Command>) => this.command(event.data);
  }

  private command(message: Command): void {
    switch (message.type) {
      case "push":
        this.queue.push(message.samples);
        break;
      case "end":
        this.queue.end();
        break;
      case "flush":
        this.queue.flush();
        this.report();
        break;
      case "turn":
        this.queue.newTurn();
        break;
      case "volume":
        this.volume = message.value;
        break;
      case "prebuffer":
        this.queue.prebufferSamples = Math.round((sampleRate * message.ms) / 1000);
        break;
    }
  }

  process(_inputs: Float32Array[][], outputs: Float32Array[][]): boolean {
    const channel = outputs[0][0];
    this.queue.pull(channel);
    if (this.volume !== 1) for (let i = 0; i < channel.length; i++) channel[i] *= this.volume;
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(channel);
    if (this.queue.firstAudible) {
      this.queue.firstAudible = false;
      this.port.postMessage({ type: "audible", time: currentTime });
    }
    this.frames += 1;
    if (this.frames % 8 === 0 || this.queue.state !== this.lastState) this.report();
    return true;
  }

  private report(): void {
    this.lastState = this.queue.state;
    this.port.postMessage({ type: "stats", ...this.queue.stats() });
  }
}

registerProcessor("pcm-player", PcmPlayerProcessor);
