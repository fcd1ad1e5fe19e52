// The bar above the conversation: connection, what the assistant is doing, the speech allowance, and the
// listening settings (voice, auto-play, volume). At phone width it also opens the conversation drawer.
import type { ReactNode } from "react";
import type { ConnectionState } from "./counters";
import type { Indicator } from "./indicator";
import type { Budget as SpeechBudget } from "./chat";
import { shortTime } from "./time";

const STATUS_TEXT: Record<ConnectionState, string> = {
  idle: "Ready",
  connecting: "Connecting…",
  open: "Connected",
  closed: "Disconnected, reconnecting…",
};

interface ToolbarProps {
  status: ConnectionState;
  /** The connection ended for good (another tab took over, …): no reconnecting by itself. */
  ended: boolean;
  indicator: Indicator;
  budget: SpeechBudget | null;
  autoplay: boolean;
  onAutoplay: (on: boolean) => void;
  volume: number;
  onVolume: (value: number) => void;
  drawerOpen: boolean;
  onDrawer: () => void;
  /** The conversation's voice picker (VoicePicker.tsx), when its agent offers a choice. */
  voice?: ReactNode;
}

export function Toolbar(props: ToolbarProps) {
  const { status, indicator } = props;
  return (
    <div className="toolbar">
      <button type="button" className="drawer-toggle icon" aria-controls="sidebar" aria-expanded={props.drawerOpen} onClick={props.onDrawer}>
        <span aria-hidden="true">☰</span>
        <span className="sr-only">Conversations</span>
      </button>
      <span className={`connection ${props.ended ? "closed" : status}`} role="status" data-testid="connection">
        {props.ended ? "Disconnected" : STATUS_TEXT[status]}
      </span>
      <Activity indicator={indicator} />
      <span className="spacer" />
      <Budget budget={props.budget} />
      <span className="listening">
        {props.voice}
        <label className="autoplay" title="Speak replies as they arrive. Off: nothing is spoken (or paid for) until you press Play.">
          <input type="checkbox" checked={props.autoplay} onChange={(e) => props.onAutoplay(e.target.checked)} /> Auto-play
        </label>
        <label className="volume">
          Volume
          <input type="range" min="0" max="1" step="0.05" value={props.volume} onChange={(e) => props.onVolume(Number(e.target.value))} />
        </label>
      </span>
    </div>
  );
}

const VOICE_TEXT = {
  speaking: "speaking",
  queued: "queued for a voice",
  waiting: "waiting for voice",
};

function Activity({ indicator }: { indicator: Indicator }) {
  const { writing, voice, queuePosition } = indicator;
  const queued = voice === "queued" && queuePosition ? `${VOICE_TEXT.queued} (${queuePosition} ahead)` : voice && VOICE_TEXT[voice];
  return (
    <span className="activity" data-writing={writing || undefined} data-voice={voice ?? undefined}>
      {writing && <span className="chip writing">✎ writing</span>}
      {voice && (
        <span className={`chip ${voice}`} role="img" aria-label={`The assistant is ${queued}`}>
          <span aria-hidden="true">{voice === "speaking" ? "● " : "◌ "}{queued}</span>
        </span>
      )}
    </span>
  );
}

function Budget({ budget }: { budget: SpeechBudget | null }) {
  if (!budget || (budget.limit_chars === null && !budget.site_exhausted)) return null; // unlimited: nothing to say
  const resets = budget.resets_at ? ` · resets ${shortTime(budget.resets_at)}` : "";
  if (budget.site_exhausted) {
    return (
      <span className="budget empty" title="The site's speech allowance is used up; replies arrive as text only.">
        Speech paused for everyone{resets}
      </span>
    );
  }
  const left = Math.max(0, budget.remaining_chars ?? 0);
  const share = budget.limit_chars ? left / budget.limit_chars : 0;
  const used = left === 0 || budget.exhausted;
  const title = `${left.toLocaleString()} of ${budget.limit_chars?.toLocaleString()} characters of speech left${resets}. Replies past the allowance arrive as text only.`;
  return (
    <span className={`budget${used ? " empty" : share < 0.1 ? " low" : ""}`} title={title} data-remaining={left}>
      {used ? "Speech allowance used up" : `Speech: ${left.toLocaleString()} chars left`}
      {resets}
    </span>
  );
}
