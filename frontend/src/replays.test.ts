import { counters } from "./counters";
import { Player } from "./player";
import { Replays } from "./replays";
import { FakeAudio } from "./testing/fakeAudio";
import { TurnAudio } from "./turnAudio";

/** A 16-bit mono WAV of `ms` at `rate`, every sample non-silent. */
function wav(ms: number, rate = 24000): ArrayBuffer {
  const samples = Math.round((ms / 1000) * rate);
  const buffer = new ArrayBuffer(44 + samples * 2);
  const view = new DataView(buffer);
  const text = (at: number, s: string) => [...s].forEach((c, i) => view.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, buffer.byteLength - 8, true);
  text(8, "WAVEfmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true);
  view.setUint16(22, 1, true);
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  text(36, "data");
  view.setUint32(40, samples * 2, true);
  for (let i = 0; i < samples; i++) view.setInt16(44 + i * 2, 5000, true);
  return buffer;
}

async function setup() {
  Object.assign(counters, { samplesQueued: 0, samplesPlayed: 0, state: "locked" });
  const audio = new FakeAudio();
  audio.install();
  const player = new Player("/w.js", 80);
  player.prepare(24000);
  await audio.settle();
  const live = new TurnAudio(player);
  const downloads: string[] = [];
  const replays = new Replays(player, live, async (url) => {
    downloads.push(url);
    return wav(2000);
  });
  return { audio, player, live, replays, downloads };
}

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
});

describe("Replays", () => {
  it("plays a stored reply and follows what is heard, not the clock", async () => {
    const { audio, replays } = await setup();
    await replays.play("a1", "/a1.wav");
    expect(replays.current()).toMatchObject({ messageId: "a1", phase: "playing", durationMs: 2000 });
    audio.run(500);
    expect(replays.positionMs("a1")).toBeGreaterThan(420);
    expect(replays.positionMs("a1")).toBeLessThan(520);
    expect(replays.positionMs("a2")).toBeNull();
  });

  it("pauses where the listener is and resumes from there without downloading again", async () => {
    const { audio, replays, downloads } = await setup();
    await replays.play("a1", "/a1.wav");
    audio.run(600);
    replays.pause();
    const paused = replays.positionMs("a1") ?? 0;
    expect(replays.current()?.phase).toBe("paused");
    audio.run(500);
    expect(replays.positionMs("a1")).toBe(paused); // paused means it stays put
    expect(counters.state).toBe("idle");
    await replays.play("a1", "/a1.wav", paused);
    audio.run(300);
    expect(replays.positionMs("a1")).toBeGreaterThan(paused + 200);
    expect(downloads).toEqual(["/a1.wav"]);
  });

  it("seeks: playing from a word starts its audio there", async () => {
    const { audio, replays, player } = await setup();
    await replays.play("a1", "/a1.wav", 1500);
    audio.run(200);
    const at = replays.positionMs("a1") ?? 0;
    expect(at).toBeGreaterThan(1500 + 100);
    expect(at).toBeLessThan(1500 + 220);
    audio.run(800); // only 500 ms were left
    expect(player.nowPlaying().state).toBe("idle");
    expect(replays.current()).toBeNull(); // played to its end
  });

  it("plays one reply at a time", async () => {
    const { audio, replays, player } = await setup();
    await replays.play("a1", "/a1.wav");
    audio.run(200);
    await replays.play("a2", "/a2.wav");
    audio.run(200);
    expect(replays.current()?.messageId).toBe("a2");
    expect(player.nowPlaying().label).toBe("a2");
    expect(replays.positionMs("a1")).toBeNull();
  });

  it("gives way when a live reply takes the player", async () => {
    const { audio, replays, live } = await setup();
    await replays.play("a1", "/a1.wav");
    audio.run(200);
    live.beginUnmeasured("greeting", true);
    expect(replays.current()).toBeNull();
  });
});
