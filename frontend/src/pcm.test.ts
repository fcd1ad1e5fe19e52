import { base64ToBytes, LinearResampler, Pcm16Decoder, sampleRateOf } from "./pcm";

describe("Pcm16Decoder", () => {
  it("decodes little-endian samples and carries an odd byte to the next chunk", () => {
    const decoder = new Pcm16Decoder();
    const bytes = new Uint8Array([0x00, 0x40, 0x00, 0xc0, 0xff]);
    expect(Array.from(decoder.decode(bytes))).toEqual([0.5, -0.5]);
    expect(Array.from(decoder.decode(new Uint8Array([0x7f])))).toEqual([32767 / 32768]);
  });

  it("gives the same samples for any split of the stream", () => {
    const bytes = Uint8Array.from({ length: 101 }, (_, i) => (i * 37) % 256);
    const whole = Array.from(new Pcm16Decoder().decode(bytes));
    const decoder = new Pcm16Decoder();
    const parts = [1, 2, 3, 5, 7, 11, 13, 17, 19, 23].reduce<number[]>((acc, size, index, sizes) => {
      const start = sizes.slice(0, index).reduce((a, b) => a + b, 0);
      return [...acc, ...decoder.decode(bytes.subarray(start, start + size))];
    }, []);
    expect(parts).toEqual(whole);
  });
});

describe("LinearResampler", () => {
  it("keeps the length ratio and continuity across chunks", () => {
    const resampler = new LinearResampler(24000, 48000);
    const out = [...resampler.process(new Float32Array(100).fill(1)), ...resampler.process(new Float32Array(100).fill(1))];
    expect(out.length).toBe(400);
    expect(out.slice(2).every((v) => Math.abs(v - 1) < 1e-6)).toBe(true);
  });

  it("passes samples through at equal rates", () => {
    const input = Float32Array.from([0.1, 0.2]);
    expect(new LinearResampler(24000, 24000).process(input)).toBe(input);
  });
});

it("reads the sample rate from the announced format", () => {
  expect(sampleRateOf("pcm_22050")).toBe(22050);
  expect(() => sampleRateOf("mp3_44100_128")).toThrow();
});

describe("PCM edge cases", () => {
  it("decodes the extremes of the 16-bit range", () => {
    const out = new Pcm16Decoder().decode(new Uint8Array([0x00, 0x80, 0xff, 0x7f, 0xff, 0xff]));
    expect(Array.from(out)).toEqual([-1, 32767 / 32768, -1 / 32768]);
  });

  it("forgets a carried byte on reset (a flushed turn does not leak into the next)", () => {
    const decoder = new Pcm16Decoder();
    decoder.decode(new Uint8Array([0x01]));
    decoder.reset();
    expect(Array.from(decoder.decode(new Uint8Array([0x00, 0x40])))).toEqual([0.5]);
  });

  it.each([
    [22050, 48000],
    [24000, 44100],
    [48000, 24000],
    [16000, 48000],
  ])("resamples %i Hz to %i Hz without drift over many odd chunks", (from, to) => {
    const resampler = new LinearResampler(from, to);
    let inputs = 0;
    let outputs = 0;
    for (let i = 0; i < 200; i++) {
      const size = 97 + ((i * 31) % 60);
      inputs += size;
      outputs += resampler.process(new Float32Array(size).fill(0.25)).length;
    }
    expect(Math.abs(outputs - (inputs * to) / from)).toBeLessThanOrEqual(1);
  });

  it("interpolates a ramp smoothly across a chunk boundary", () => {
    const resampler = new LinearResampler(24000, 48000);
    const ramp = Float32Array.from({ length: 20 }, (_, i) => i / 20);
    const out = [...resampler.process(ramp.subarray(0, 7)), ...resampler.process(ramp.subarray(7))];
    const steps = out.slice(4).map((v, i) => v - out[i + 3]); // the first outputs lead in from silence
    steps.forEach((step) => expect(step).toBeCloseTo(1 / 40, 5));
  });

  it("decodes base64 audio events", () => {
    expect(Array.from(base64ToBytes("AAEC/w=="))).toEqual([0, 1, 2, 255]);
  });
});
