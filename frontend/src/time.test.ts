import { clock, dayGroup, groupByDay, shortTime } from "./time";

const now = new Date(2030, 4, 15, 10, 30);
const local = (day: number, hour = 9) => new Date(2030, 4, day, hour, 5).toISOString();

describe("dates in the page", () => {
  it("groups by Today, Yesterday and Earlier in the browser's time zone", () => {
    expect(dayGroup(local(15, 0), now)).toBe("Today");
    expect(dayGroup(local(14, 23), now)).toBe("Yesterday");
    expect(dayGroup(local(13, 23), now)).toBe("Earlier");
  });

  it("keeps the list's order and names each group once", () => {
    const items = [local(15), local(15), local(14), local(2), local(1)];
    expect(groupByDay(items, (x) => x, now).map((g) => [g.group, g.items.length])).toEqual([
      ["Today", 2],
      ["Yesterday", 1],
      ["Earlier", 2],
    ]);
  });

  it("says a message's time shortly, with the day when it is not today", () => {
    expect(shortTime(local(15), now)).not.toMatch(/Yesterday/);
    expect(shortTime(local(14), now)).toMatch(/^Yesterday /);
    expect(shortTime(local(3), now)).toMatch(/3/);
    expect(shortTime("not a date", now)).toBe("");
  });

  it("writes durations as minutes and seconds", () => {
    expect(clock(0)).toBe("0:00");
    expect(clock(7400)).toBe("0:07");
    expect(clock(83000)).toBe("1:23");
  });
});
