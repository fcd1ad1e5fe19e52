import { LinearResampler, Pcm16Decoder, sampleRateOf } from "./pcm";

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
