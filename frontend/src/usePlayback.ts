// React views of the player: what plays now, the replay state, and a position that follows the audio.
import { useEffect, useRef, useState, useSyncExternalStore } from "react";
import type { NowPlaying, Player } from "./player";
import type { Replays, ReplayState } from "./replays";

function same(a: NowPlaying, b: NowPlaying): boolean {
  return a.turn === b.turn && a.label === b.label && a.state === b.state && a.audible === b.audible && a.reported === b.reported;
}

/** What the player plays now; re-renders when the queue state or the turn changes. */
export function useNowPlaying(player: Player): NowPlaying {
  const last = useRef<NowPlaying | null>(null);
  const snapshot = () => {
    const now = player.nowPlaying();
    if (!last.current || !same(last.current, now)) last.current = now;
    return last.current;
  };
  return useSyncExternalStore((listener) => player.subscribe(listener), snapshot, snapshot);
}

export function useReplay(replays: Replays): ReplayState | null {
  return useSyncExternalStore(
    (listener) => replays.subscribe(listener),
    () => replays.current(),
    () => replays.current(),
  );
}

/**
 * Calls `read` on every animation frame while `active` and hands its value to `onFrame` (for word
 * highlighting, which touches the DOM directly rather than re-rendering a reply 60 times a second).
 */
export function useAnimationFrames(active: boolean, read: () => number | null, onFrame: (value: number | null) => void): void {
  const latest = useRef({ read, onFrame });
  latest.current = { read, onFrame };
  useEffect(() => {
    if (!active) {
      latest.current.onFrame(null);
      return;
    }
    let frame = 0;
    const tick = () => {
      latest.current.onFrame(latest.current.read());
      frame = requestAnimationFrame(tick);
    };
    tick();
    return () => {
      cancelAnimationFrame(frame);
      latest.current.onFrame(null);
    };
  }, [active]);
}

/** A value read every ~100 ms while `active` (a progress bar needs no more). */
export function usePolled(active: boolean, read: () => number | null): number | null {
  const [value, setValue] = useState<number | null>(() => read());
  const latest = useRef(read);
  latest.current = read;
  useEffect(() => {
    setValue(latest.current());
    if (!active) return;
    const timer = setInterval(() => setValue(latest.current()), 100);
    return () => clearInterval(timer);
  }, [active]);
  return value;
}
