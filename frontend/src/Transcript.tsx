// The message list: older pages load when scrolled to the top; new text keeps the view at the bottom.
import { useLayoutEffect, useRef } from "react";
import { Markdown } from "./markdown";
import type { ChatMessage } from "./protocol";

interface TranscriptProps {
  messages: ChatMessage[];
  greeting: string;
  hasOlder: boolean;
  onOlder: () => Promise<void>;
  onReplay: (message: ChatMessage) => void;
  /** Changes when another conversation opens: the view jumps to its bottom. */
  conversationKey: string;
}

export function Transcript({ messages, greeting, hasOlder, onOlder, onReplay, conversationKey }: TranscriptProps) {
  const box = useRef<HTMLDivElement>(null);
  const stick = useRef(true); // follow new text while the reader is at the bottom
  const anchor = useRef<number | null>(null); // scrollHeight before older messages were prepended
  const loading = useRef(false);

  useLayoutEffect(() => {
    stick.current = true;
  }, [conversationKey]);

  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    if (anchor.current !== null) {
      el.scrollTop += el.scrollHeight - anchor.current; // keep the message the reader looked at in place
      anchor.current = null;
    } else if (stick.current) {
      el.scrollTop = el.scrollHeight;
    }
  }, [messages]);

  const loadOlder = async () => {
    const el = box.current;
    if (!el || !hasOlder || loading.current) return;
    loading.current = true;
    anchor.current = el.scrollHeight;
    try {
      await onOlder();
    } finally {
      loading.current = false;
    }
  };

  return (
    <div
      className="transcript"
      ref={box}
      onScroll={(e) => {
        const el = e.currentTarget;
        stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
        if (el.scrollTop < 40) void loadOlder();
      }}
    >
      {hasOlder && (
        <button type="button" className="older" onClick={() => void loadOlder()}>
          Load older messages
        </button>
      )}
      {!messages.length && greeting && (
        <p className="greeting">
          {greeting}
        </p>
      )}
      {messages.map((m) => (
        <MessageView key={m.id} message={m} onReplay={onReplay} />
      ))}
    </div>
  );
}

function MessageView({ message: m, onReplay }: { message: ChatMessage; onReplay: (message: ChatMessage) => void }) {
  const label = m.role === "assistant" ? "Assistant" : "You";
  return (
    <article className={`message ${m.role}`} data-status={m.status} data-message-id={m.id} aria-label={label}>
      <div className="body">{m.role === "assistant" ? <Markdown text={m.text} /> : <p>{m.text}</p>}</div>
      <footer>
        {m.status === "streaming" && <span className="badge live">writing…</span>}
        {m.status === "interrupted" && <span className="badge">interrupted</span>}
        {m.status === "failed" && (
          <span className="badge error" title={m.error_message || undefined}>
            failed
          </span>
        )}
        {m.audio_status === "failed" && <span className="badge error">audio failed</span>}
        {m.audio_status === "partial" && m.status !== "interrupted" && <span className="badge">audio partial</span>}
        {m.role === "assistant" && m.audio_url && (
          <button type="button" className="replay" onClick={() => onReplay(m)} aria-label="Replay this reply">
            ▶ Replay
          </button>
        )}
      </footer>
    </article>
  );
}
