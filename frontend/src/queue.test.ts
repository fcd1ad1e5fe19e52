import { SampleQueue } from "./queue";

const ramp = (from: number, n: number) => Float32Array.from({ length: n }, (_, i) => (from + i) / 1000);
const quantum = () => new Float32Array(128);

describe("SampleQueue", () => {
  it("plays chunks in order with no gap between them, whatever their sizes", () => {
    const queue = new SampleQueue(0);
    queue.push(ramp(1, 100));
    queue.push(ramp(101, 7));
    queue.push(ramp(108, 300));
    const out = [...queue.pull(quantum()), ...queue.pull(quantum()), ...queue.pull(quantum())];
    expect(out.slice(0, 384).map((v) => Math.round(v * 1000))).toEqual(Array.from({ length: 384 }, (_, i) => i + 1));
    expect(queue.samplesPlayed).toBe(384);
  });

  it("waits for the start-up buffer before playing", () => {
    const queue = new SampleQueue(256);
    queue.push(ramp(1, 200));
    expect(queue.pull(quantum()).every((v) => v === 0)).toBe(true);
    expect(queue.state).toBe("buffering");
    queue.push(ramp(201, 100));
    expect(queue.pull(quantum())[0]).toBeCloseTo(0.001);
    expect(queue.state).toBe("playing");
  });

  it("counts one underrun per gap while a turn is still streaming", () => {
    const queue = new SampleQueue(0);
    queue.push(ramp(1, 130));
    queue.pull(quantum());
    queue.pull(quantum());
    queue.pull(quantum());
    expect(queue.underruns).toBe(1);
    queue.push(ramp(1, 256));
    queue.pull(quantum());
    expect(queue.underruns).toBe(1);
  });

  it("drains to idle without an underrun once the turn has ended", () => {
    const queue = new SampleQueue(0);
    queue.push(ramp(1, 200));
    queue.end();
    queue.pull(quantum());
    queue.pull(quantum());
    expect(queue.state).toBe("idle");
    expect(queue.underruns).toBe(0);
  });

  it("flushes with a short fade and then stays silent", () => {
    const queue = new SampleQueue(0, 64);
    queue.push(new Float32Array(4000).fill(0.5));
    queue.pull(quantum());
    queue.flush();
    const faded = queue.pull(quantum());
    expect(faded[0]).toBeCloseTo(0.5);
    expect(faded[32]).toBeCloseTo(0.25);
    expect(faded.slice(64).every((v) => v === 0)).toBe(true);
    expect(queue.pull(quantum()).every((v) => v === 0)).toBe(true);
    expect(queue.state).toBe("idle");
  });

  it("flags the first audible sample once per turn", () => {
    const queue = new SampleQueue(0);
    queue.push(new Float32Array(128));
    queue.push(new Float32Array(128).fill(0.1));
    queue.pull(quantum());
    expect(queue.firstAudible).toBe(false);
    queue.pull(quantum());
    expect(queue.firstAudible).toBe(true);
  });
});

describe("SampleQueue, edge cases", () => {
  it("keeps order across many odd-sized chunks, one sample at a time too", () => {
    const queue = new SampleQueue(0);
    let next = 1;
    for (const size of [1, 1, 3, 127, 129, 2, 5, 1, 255, 4]) {
      queue.push(ramp(next, size));
      next += size;
    }
    const out: number[] = [];
    for (let i = 0; i < 5; i++) out.push(...queue.pull(quantum()));
    expect(out.slice(0, next - 1).map((v) => Math.round(v * 1000))).toEqual(Array.from({ length: next - 1 }, (_, i) => i + 1));
    expect(queue.samplesPlayed).toBe(next - 1);
  });

  it("counts no underrun while still filling the start-up buffer", () => {
    const queue = new SampleQueue(1000);
    queue.push(ramp(1, 300));
    for (let i = 0; i < 10; i++) queue.pull(quantum());
    expect(queue.underruns).toBe(0);
    expect(queue.samplesPlayed).toBe(0);
  });

  it("refills the start-up buffer after an underrun before playing on", () => {
    const queue = new SampleQueue(256);
    queue.push(ramp(1, 300));
    queue.pull(quantum());
    queue.pull(quantum());
    queue.pull(quantum()); // 44 samples left, then short: an underrun
    expect(queue.underruns).toBe(1);
    expect(queue.state).toBe("buffering");
    queue.push(ramp(1, 100));
    expect(queue.pull(quantum()).every((v) => v === 0)).toBe(true);
    queue.push(ramp(101, 200));
    expect(queue.pull(quantum())[0]).toBeCloseTo(0.001);
  });

  it("flushes at once, without a fade, when nothing has played yet", () => {
    const queue = new SampleQueue(1000);
    queue.push(new Float32Array(500).fill(0.5));
    queue.flush();
    expect(queue.state).toBe("idle");
    expect(queue.pull(quantum()).every((v) => v === 0)).toBe(true);
    expect(queue.samplesPlayed).toBe(0);
  });

  it("plays audio pushed after a flush as a new stream", () => {
    const queue = new SampleQueue(0, 16);
    queue.push(new Float32Array(1000).fill(0.5));
    queue.pull(quantum());
    queue.flush();
    queue.pull(quantum()); // the fade tail
    expect(queue.state).toBe("idle");
    queue.push(ramp(1, 128));
    expect(Math.round(queue.pull(quantum())[5] * 1000)).toBe(6);
  });

  it("tells where in the quantum the first audible sample sits, once per turn", () => {
    const queue = new SampleQueue(0);
    const chunk = new Float32Array(128);
    chunk[40] = 0.2;
    queue.push(chunk);
    queue.pull(quantum());
    expect(queue.firstAudible).toBe(true);
    expect(queue.firstAudibleIndex).toBe(40);
    queue.firstAudible = false;
    queue.push(new Float32Array(128).fill(0.3));
    queue.pull(quantum());
    expect(queue.firstAudible).toBe(false);
    queue.newTurn();
    queue.push(new Float32Array(128).fill(0.3));
    queue.pull(quantum());
    expect(queue.firstAudible).toBe(true);
  });
});

describe("SampleQueue, turns", () => {
  it("never flags the previous turn's fade-out tail as the new turn's first audible sample", () => {
    const queue = new SampleQueue(0, 64);
    queue.push(new Float32Array(4000).fill(0.5));
    queue.pull(quantum());
    queue.flush(); // Send while a reply plays: 64 samples of fade-out stay queued
    queue.newTurn(2);
    queue.firstAudible = false;
    const tail = queue.pull(quantum());
    expect(tail[0]).toBeGreaterThan(0); // the tail is heard…
    expect(queue.firstAudible).toBe(false); // …but it is not the new reply
    queue.push(new Float32Array(256).fill(0.2));
    queue.pull(quantum());
    expect(queue.firstAudible).toBe(true);
    expect(queue.firstAudibleIndex).toBe(0);
  });

  it("lets the new turn fill its start-up buffer after the fade-out, never inside the fading quantum", () => {
    const queue = new SampleQueue(100, 40);
    queue.push(new Float32Array(1000).fill(0.5));
    queue.pull(quantum());
    queue.flush();
    queue.newTurn();
    queue.push(new Float32Array(60).fill(0.3));
    const fading = queue.pull(quantum());
    expect(fading.slice(40).every((v) => v === 0)).toBe(true); // only the fade in this quantum
    expect(queue.firstAudible).toBe(false);
    expect(queue.state).toBe("buffering");
    expect(queue.pull(quantum()).every((v) => v === 0)).toBe(true); // 60 < the 100-sample start-up buffer
    queue.push(new Float32Array(200).fill(0.3));
    expect(queue.pull(quantum())[0]).toBeCloseTo(0.3);
    expect(queue.firstAudible).toBe(true);
    expect(queue.firstAudibleIndex).toBe(0);
    expect(queue.underruns).toBe(0);
  });

  it("counts only the current turn's samples as its position, across underruns", () => {
    const queue = new SampleQueue(0, 32);
    queue.push(new Float32Array(1000).fill(0.5));
    queue.pull(quantum());
    queue.flush();
    queue.newTurn(5);
    queue.push(new Float32Array(100).fill(0.1));
    queue.pull(quantum()); // the 32 samples of fade-out
    expect(queue.stats()).toMatchObject({ turn: 5, turnPlayed: 0 });
    queue.pull(quantum()); // the turn's 100, then an underrun: the position waits with the audio
    queue.pull(quantum());
    expect(queue.turnPlayed).toBe(100);
    expect(queue.samplesPlayed).toBe(128 + 32 + 100);
  });
});
