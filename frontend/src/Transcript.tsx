// The message list: older pages load when scrolled to the top; new text keeps the view at the bottom.
import { useLayoutEffect, useRef } from "react";
import type { ChatMessage } from "./chat";
import { MessageView } from "./MessageView";
import type { NowPlaying, Player } from "./player";
import type { ReplayState } from "./replays";

export interface PlaybackControls {
  player: Player;
  now: NowPlaying;
  replay: ReplayState | null;
  /** A turn runs: an on-demand Play waits until it has finished. */
  busy: boolean;
  onPlay: (message: ChatMessage, fromMs?: number) => void;
  onPause: () => void;
  onSpeak: (message: ChatMessage) => void;
}

interface TranscriptProps {
  messages: ChatMessage[];
  /** Shown while the conversation has no message (the agent's first message, when it has one). */
  greeting: string;
  hasOlder: boolean;
  onOlder: () => Promise<void>;
  /** Changes when another conversation opens: the view jumps to its bottom. */
  conversationKey: string;
  playback: PlaybackControls;
}

export function Transcript({ messages, greeting, hasOlder, onOlder, conversationKey, playback }: TranscriptProps) {
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
      {!messages.length && (
        <p className="empty">
          {greeting || "Type a message below to start. Replies are written and spoken as they arrive."}
        </p>
      )}
      {messages.map((m) => (
        <MessageView key={m.id} message={m} playback={playback} />
      ))}
    </div>
  );
}
