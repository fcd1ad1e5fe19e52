// The AudioWorklet processor: the audio-thread shell around PlayerEngine (engine.ts).
import { PlayerEngine } from "./engine";
import type { Command } from "./queue";

declare const sampleRate: number;
declare const currentTime: number;
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
  constructor(options?: unknown);
}
declare function registerProcessor(name: string, ctor: unknown): void;

class PcmPlayerProcessor extends AudioWorkletProcessor {
  private engine = new PlayerEngine(sampleRate, (message) => this.port.postMessage(message));

  constructor() {
    super();
    this.port.onmessage = (event: MessageEvent<Command>) => this.engine.command(event.data, currentTime);
  }

  process(_inputs: Float32Array[][], outputs: Float32Array[][]): boolean {
    const channels = outputs[0];
    this.engine.render(channels[0], currentTime);
    for (let c = 1; c < channels.length; c++) channels[c].set(channels[0]);
    return true;
  }
}

registerProcessor("pcm-player", PcmPlayerProcessor);
