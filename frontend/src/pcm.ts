// PCM helpers shared by the player (main thread) and tested alone: s16le bytes → float samples.

/** Decodes little-endian 16-bit PCM; an odd trailing byte is carried into the next call. */
export class Pcm16Decoder {
  private carry: number | null = null;

  decode(bytes: Uint8Array): Float32Array {
    let input = bytes;
    if (this.carry !== null) {
      const joined = new Uint8Array(bytes.length + 1);
      joined[0] = this.carry;
      joined.set(bytes, 1);
      input = joined;
      this.carry = null;
    }
    const whole = input.length - (input.length % 2);
    if (whole < input.length) this.carry = input[input.length - 1];
    const out = new Float32Array(whole / 2);
    const view = new DataView(input.buffer, input.byteOffset, whole);
    for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true) / 32768;
    return out;
  }

  reset(): void {
    this.carry = null;
  }
}

/** Linear resampler that keeps its phase across chunks, for when the AudioContext runs at another rate. */
export class LinearResampler {
  private position = 0;
  private last = 0;
  private readonly step: number;

  constructor(from: number, to: number) {
    this.step = from / to;
  }

  process(input: Float32Array): Float32Array {
    if (this.step === 1) return input;
    const out: number[] = [];
    while (this.position < input.length) {
      const index = Math.floor(this.position);
      const frac = this.position - index;
      const a = index === 0 ? this.last : input[index - 1];
      const b = input[index];
      out.push(a + (b - a) * frac);
      this.position += this.step;
    }
    this.position -= input.length;
    if (input.length) this.last = input[input.length - 1];
    return Float32Array.from(out);
  }
}

export function base64ToBytes(base64: string): Uint8Array {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export function sampleRateOf(format: string): number {
  const match = /^pcm_(\d+)$/.exec(format);
  if (!match) throw new Error(`unsupported audio format ${format}`);
  return Number(match[1]);
}
