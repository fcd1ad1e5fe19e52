// The AudioWorklet processor: plays queued PCM gaplessly and reports counters to the page.
import { type Command, SampleQueue } from "./queue";

declare const sampleRate: number;
declare const currentTime: number;
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
  constructor(options?: unknown);
}
declare function registerProcessor(name: string, ctor: unknown): void;

const REPORT_EVERY_QUANTA = 8; // ~40 ms at 24 kHz: live enough for tests, cheap for the page

class PcmPlayerProcessor extends AudioWorkletProcessor {
  // 5 ms fade on flush: long enough not to click, short enough to be "at once".
  private queue = new SampleQueue(Math.round(sampleRate * 0.08), Math.round(sampleRate * 0.005));
  private quanta = 0;
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
      case "prebuffer":
        this.queue.prebufferSamples = Math.round((sampleRate * message.ms) / 1000);
        break;
    }
  }

  process(_inputs: Float32Array[][], outputs: Float32Array[][]): boolean {
    const channels = outputs[0];
    this.queue.pull(channels[0]);
    for (let c = 1; c < channels.length; c++) channels[c].set(channels[0]);
    if (this.queue.firstAudible) {
      this.queue.firstAudible = false;
      this.port.postMessage({ type: "audible", time: currentTime + this.queue.firstAudibleIndex / sampleRate });
    }
    this.quanta += 1;
    if (this.quanta % REPORT_EVERY_QUANTA === 0 || this.queue.state !== this.lastState) this.report();
    return true;
  }

  private report(): void {
    this.lastState = this.queue.state;
    this.port.postMessage({ type: "stats", ...this.queue.stats() });
  }
}

registerProcessor("pcm-player", PcmPlayerProcessor);
