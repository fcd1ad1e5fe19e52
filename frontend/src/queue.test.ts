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
