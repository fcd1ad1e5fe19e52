// Dates as a person reads them in a chat: message times, conversation groups, durations.

export type DayGroup = "Today" | "Yesterday" | "Earlier";

function startOfDay(date: Date): number {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime();
}

/** Today, Yesterday or Earlier, in the browser's time zone. */
export function dayGroup(iso: string, now = new Date()): DayGroup {
  const day = startOfDay(new Date(iso));
  const today = startOfDay(now);
  if (day >= today) return "Today";
  if (day >= startOfDay(new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1))) return "Yesterday";
  return "Earlier";
}

/** Items in their order, cut into day groups (a group appears once, where its first item is). */
export function groupByDay<T>(items: T[], dateOf: (item: T) => string, now = new Date()): { group: DayGroup; items: T[] }[] {
  const groups: { group: DayGroup; items: T[] }[] = [];
  for (const item of items) {
    const group = dayGroup(dateOf(item), now);
    const last = groups[groups.length - 1];
    if (last?.group === group) last.items.push(item);
    else groups.push({ group, items: [item] });
  }
  return groups;
}

/** "14:05" today, "Yesterday 14:05", or "12 Mar 14:05". */
export function shortTime(iso: string, now = new Date()): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const time = date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  const group = dayGroup(iso, now);
  if (group === "Today") return time;
  if (group === "Yesterday") return `Yesterday ${time}`;
  return `${date.toLocaleDateString(undefined, { day: "numeric", month: "short" })} ${time}`;
}

export function fullTime(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString(undefined, { dateStyle: "full", timeStyle: "short" });
}

/** 0:07, 1:23: the length of a reply's audio. */
export function clock(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}
