// One message: its text (replies as markdown, the word being heard lit), time, status badges, and the
// reply's audio controls: play/pause with progress and a download link once stored, or Play on demand.
import { memo, useMemo, useRef, type MouseEvent } from "react";
import type { ChatMessage } from "./chat";
import { Markdown } from "./markdown";
import { clock, fullTime, shortTime } from "./time";
import type { PlaybackControls } from "./Transcript";
import { useAnimationFrames, usePolled } from "./usePlayback";
import { byTime, wordAt } from "./words";

export function MessageView({ message: m, playback }: { message: ChatMessage; playback: PlaybackControls }) {
  const { now, replay, player } = playback;
  const body = useRef<HTMLDivElement>(null);
  const lit = useRef<number>(-1);
  const words = m.words ?? null;
  const order = useMemo(() => (words ? byTime(words) : []), [words]);
  // This message's audio is in the player now (live, greeting, on-demand or replay).
  const heard = now.label === m.id && now.state !== "idle" && now.state !== "locked";
  const replaying = replay?.messageId === m.id;
  const spokenLive = heard && !replaying; // the reply is still being spoken: no replay control yet

  useAnimationFrames(
    heard && !!words?.length,
    () => player.positionMs(now.turn),
    (ms) => {
      const index = ms === null || !words ? -1 : wordAt(words, order, ms);
      if (index === lit.current || !body.current) return;
      body.current.querySelectorAll(".w.now").forEach((el) => el.classList.remove("now"));
      if (index >= 0) body.current.querySelectorAll(`[data-w="${index}"]`).forEach((el) => el.classList.add("now"));
      lit.current = index;
    },
  );

  const seekable = m.role === "assistant" && !!m.audio_url && !!words?.length && !spokenLive;
  const onClick = (event: MouseEvent<HTMLDivElement>) => {
    if (!seekable || !words) return;
    const target = (event.target as Element).closest("[data-w]");
    if (!target || target.closest("a") || !window.getSelection()?.isCollapsed) return; // links and selecting text win
    const word = words[Number(target.getAttribute("data-w"))];
    if (word) playback.onPlay(m, word[2]);
  };

  const label = m.role === "assistant" ? (m.greeting ? "Assistant's greeting" : "Assistant") : "You";
  return (
    <article className={`message ${m.role}${seekable ? " seekable" : ""}`} data-status={m.status} data-message-id={m.id} aria-label={label}>
      <div className="body" ref={body} onClick={onClick}>
        {m.role === "assistant" ? <MemoMarkdown text={m.text} words={words} streaming={!!m.writing} /> : <p>{m.text}</p>}
      </div>
      <footer>
        {m.created_at && (
          <time dateTime={m.created_at} title={fullTime(m.created_at)}>
            {shortTime(m.created_at)}
          </time>
        )}
        <Badges message={m} />
        {m.role === "assistant" && !spokenLive && m.status !== "streaming" && <AudioControls message={m} playback={playback} />}
      </footer>
    </article>
  );
}

const MemoMarkdown = memo(Markdown);

function Badges({ message: m }: { message: ChatMessage }) {
  return (
    <>
      {m.writing && <span className="badge live">writing…</span>}
      {m.status === "interrupted" && <span className="badge">interrupted</span>}
      {m.status === "failed" && (
        <span className="badge error" title={m.error_message || undefined}>
          failed
        </span>
      )}
      {m.audio_status === "failed" && <span className="badge error">audio failed</span>}
      {m.audio_status === "partial" && m.status !== "interrupted" && <span className="badge">audio partial</span>}
    </>
  );
}

function AudioControls({ message: m, playback }: { message: ChatMessage; playback: PlaybackControls }) {
  if (m.audio_url) return <ReplayControl message={m} playback={playback} />;
  if (m.status === "failed" || !m.text.trim()) return null;
  if (m.synthesizing) {
    return (
      <button type="button" className="replay" disabled>
        Preparing voice…
      </button>
    );
  }
  return (
    <button
      type="button"
      className="replay"
      onClick={() => playback.onSpeak(m)}
      disabled={playback.busy}
      title={playback.busy ? "Wait until the current reply has finished" : "Have this reply spoken (made once, then kept)"}
      aria-label="Speak this reply"
    >
      ▶ Play
    </button>
  );
}

function ReplayControl({ message: m, playback }: { message: ChatMessage; playback: PlaybackControls }) {
  const { replay } = playback;
  const mine = replay?.messageId === m.id ? replay : null;
  const playing = mine?.phase === "playing" || mine?.phase === "loading";
  const position = usePolled(mine?.phase === "playing", () => (mine ? (mine.serial !== null ? playback.player.positionMs(mine.serial) : mine.positionMs) : 0));
  const duration = mine?.durationMs ?? m.audio_duration_ms ?? null;
  const at = Math.min(position ?? 0, duration ?? Infinity);
  return (
    <span className={`replay-control${mine ? " active" : ""}`}>
      <button
        type="button"
        className="replay"
        onClick={() => (playing ? playback.onPause() : playback.onPlay(m, mine?.positionMs))}
        aria-label={playing ? "Pause this reply" : "Replay this reply"}
        aria-pressed={playing}
      >
        {playing ? "❚❚ Pause" : "▶ Replay"}
      </button>
      {duration !== null && (
        <>
          <input
            type="range"
            className="progress"
            min={0}
            max={Math.max(1, Math.round(duration))}
            step={100}
            value={Math.round(at)}
            aria-label="Position in this reply"
            aria-valuetext={`${clock(at)} of ${clock(duration)}`}
            onChange={(e) => playback.onPlay(m, Number(e.target.value))}
          />
          <span className="clock">
            {clock(at)} / {clock(duration)}
          </span>
        </>
      )}
      <a className="download" href={m.audio_url ?? undefined} download aria-label="Download this reply's audio (WAV)">
        ⤓ WAV
      </a>
    </span>
  );
}
