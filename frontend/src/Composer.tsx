// The message box: grows with its text up to a limit, Enter sends and Shift+Enter adds a line, and when
// Send is off it says why. Stop sits in a slot of its own, so the box keeps its width when it appears.
import { useLayoutEffect, useRef, type KeyboardEvent } from "react";

interface ComposerProps {
  draft: string;
  onDraft: (text: string) => void;
  maxChars: number;
  /** Why nothing can be sent right now (disconnected, …), or null. */
  blocked: string | null;
  canStop: boolean;
  onSend: () => void;
  onStop: () => void;
}

/** Tallest the box grows, as a share of the window's height (it scrolls inside after that). */
const MAX_HEIGHT_SHARE = 0.4;

export function Composer({ draft, onDraft, maxChars, blocked, canStop, onSend, onStop }: ComposerProps) {
  const box = useRef<HTMLTextAreaElement>(null);
  const over = draft.length - maxChars;
  const why = blocked ?? (over > 0 ? `Too long by ${over.toLocaleString()} character${over === 1 ? "" : "s"}: shorten it to send.` : null);
  const canSend = !why && draft.trim().length > 0;

  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    el.style.height = "auto";
    const max = Math.round(window.innerHeight * MAX_HEIGHT_SHARE);
    el.style.height = `${Math.min(el.scrollHeight + 2, max)}px`; // + the borders, so one line shows no scroll bar
    el.style.overflowY = el.scrollHeight + 2 > max ? "auto" : "hidden";
  }, [draft]);

  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === "Enter" && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      if (canSend) onSend();
    }
  };

  return (
    <form
      className="composer"
      onSubmit={(e) => {
        e.preventDefault();
        if (canSend) onSend();
      }}
    >
      <label htmlFor="composer-text" className="sr-only">
        Message
      </label>
      <textarea
        id="composer-text"
        ref={box}
        value={draft}
        onChange={(e) => onDraft(e.target.value)}
        onKeyDown={onKeyDown}
        placeholder="Type a message…"
        aria-describedby="composer-why composer-counter"
        aria-invalid={over > 0 || undefined}
        rows={1}
      />
      <div className="actions">
        <button type="button" className={`stop${canStop ? "" : " off"}`} onClick={onStop} disabled={!canStop} aria-hidden={!canStop || undefined} tabIndex={canStop ? 0 : -1}>
          Stop
        </button>
        <button type="submit" disabled={!canSend} aria-describedby="composer-why">
          Send
        </button>
      </div>
      <p id="composer-why" className={`why${why ? " blocked" : ""}${over > 0 ? " over" : ""}`} aria-live="polite">
        {why ?? <span className="hint">Enter sends · Shift+Enter adds a line</span>}
      </p>
      <span id="composer-counter" className={`counter${over > 0 ? " over" : ""}`}>
        <span className="sr-only">Characters used: </span>
        {draft.length.toLocaleString()}/{maxChars.toLocaleString()}
      </span>
    </form>
  );
}
