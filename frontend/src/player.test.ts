import { counters } from "./counters";
import { outputTimeOf, parseWav, Player } from "./player";

function wav(samples: number[], rate = 22050, extraChunk = false): ArrayBuffer {
  const extra = extraChunk ? 12 : 0;
  const buffer = new ArrayBuffer(44 + extra + samples.length * 2);
  const view = new DataView(buffer);
  const text = (at: number, s: string) => [...s].forEach((c, i) => view.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, buffer.byteLength - 8, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true);
  view.setUint16(22, 1, true);
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  let at = 36;
  if (extraChunk) {
    text(at, "LIST");
    view.setUint32(at + 4, 4, true);
    at += 12;
  }
  text(at, "data");
  view.setUint32(at + 4, samples.length * 2, true);
  samples.forEach((s, i) => view.setInt16(at + 8 + i * 2, s, true));
  return buffer;
}

describe("parseWav", () => {
  it("finds the rate and the samples of a plain WAV", () => {
    expect(parseWav(wav([1, 2, 3]))).toEqual({ rate: 22050, start: 44, end: 50 });
  });

  it("skips chunks before the data chunk", () => {
    expect(parseWav(wav([1, 2], 24000, true))).toEqual({ rate: 24000, start: 56, end: 60 });
  });
});

describe("outputTimeOf", () => {
  it("maps a context time to the performance clock through the output timestamp", () => {
    const context = { getOutputTimestamp: () => ({ contextTime: 10, performanceTime: 5000 }) } as unknown as AudioContext;
    expect(outputTimeOf(context, 10.25)).toBe(5250);
  });

  it("falls back to the render clock plus the declared latencies", () => {
    vi.spyOn(performance, "now").mockReturnValue(1000);
    const context = { getOutputTimestamp: () => ({ contextTime: 0, performanceTime: 0 }), currentTime: 2, baseLatency: 0.01, outputLatency: 0.04 } as unknown as AudioContext;
    expect(outputTimeOf(context, 2.1)).toBeCloseTo(1150);
    vi.restoreAllMocks();
  });
});

describe("Player before a user gesture", () => {
  it("plays nothing and is idle at once (no AudioContext may exist yet)", async () => {
    const player = new Player("/worklet.js");
    player.pushBase64("AAEC");
    player.end();
    await expect(player.whenIdle()).resolves.toBeUndefined();
    expect(player.unlocked).toBe(false);
    expect(counters.state).toBe("locked");
  });

  it("keeps each turn's figures apart for its playback report", () => {
    const player = new Player("/worklet.js");
    player.startTurn();
    const first = player.turnSerial;
    counters.firstAudibleMs = 321;
    player.startTurn();
    expect(player.turnSummary(first)).toEqual({ firstAudibleMs: 321, underruns: 0 });
    expect(player.turnSummary(player.turnSerial).firstAudibleMs).toBeNull();
  });
});
