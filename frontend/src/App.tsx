// The chat page: conversations on the side, the streaming transcript, the composer and the player controls.
import { useCallback, useEffect, useReducer, useRef, useState, type KeyboardEvent } from "react";
import { api, type Agent, type Conversation } from "./api";
import { Markdown } from "./markdown";
import { sampleRateOf } from "./pcm";
import { counters, Player } from "./player";
import { initialState, reducer, type ChatMessage, type ServerFrame } from "./protocol";
import { ConversationSocket, type ConnectionStatus } from "./socket";

export interface AppConfig {
  conversation_id: string | null;
  ws_path: string;
  max_message_chars: number;
  agents: Agent[];
  username: string;
}

declare global {
  interface Window {
    __voicechat?: { player: typeof counters; conversationId: () => string | null; connection: () => ConnectionStatus };
  }
}

const stored = (key: string, fallback: string) => localStorage.getItem(`voicechat.${key}`) ?? fallback;

function conversationFromUrl(): string | null {
  return /^\/c\/([0-9a-f-]{36})\/?$/.exec(location.pathname)?.[1] ?? null;
}

export function App({ config, workletUrl }: { config: AppConfig; workletUrl: string }) {
  const [state, dispatch] = useReducer(reducer, initialState(config.conversation_id, config.max_message_chars));
  const [status, setStatus] = useState<ConnectionStatus>("connecting");
  const [conversations, setConversations] = useState<Conversation[]>([]);
  const [moreConversations, setMoreConversations] = useState<string | null>(null);
  const [olderMessages, setOlderMessages] = useState<string | null>(null);
  const [draft, setDraft] = useState("");
  const [autoplay, setAutoplay] = useState(stored("autoplay", "true") === "true");
  const [volume, setVolume] = useState(Number(stored("volume", "1")));
  const [agentId, setAgentId] = useState(config.agents.find((a) => a.is_default)?.id ?? config.agents[0]?.id ?? "");
  const [renaming, setRenaming] = useState<string | null>(null);
  const player = useRef(new Player(workletUrl));
  const socket = useRef<ConversationSocket | null>(null);
  const acceptAudio = useRef(false);
  const autoplayRef = useRef(autoplay);
  const transcript = useRef<HTMLDivElement>(null);

  const refreshConversations = useCallback(async () => {
    try {
      const page = await api.conversations();
      setConversations(page.results);
      setMoreConversations(page.next);
    } catch (error) {
      dispatch({ type: "notice", code: "network", message: `Could not load conversations (${String(error)}).` });
    }
  }, []);

  const onFrame = useCallback(
    (frame: ServerFrame) => {
      const p = player.current;
      switch (frame.type) {
        case "conversation_initiation_metadata": {
          const id = frame.conversation_initiation_metadata_event.conversation_id;
          p.setFormat(sampleRateOf(frame.conversation_initiation_metadata_event.agent_output_audio_format));
          if (conversationFromUrl() !== id) history.replaceState({ id }, "", `/c/${id}/`);
          break;
        }
        case "user_transcript":
          acceptAudio.current = autoplayRef.current; // a new turn: its audio is welcome
          break;
        case "audio":
          if (acceptAudio.current) p.pushBase64(frame.audio_event.audio_base_64);
          break;
        case "interruption":
          acceptAudio.current = false;
          p.flush();
          break;
        case "agent_response_complete": {
          const event = frame.agent_response_complete_event;
          p.end();
          if (acceptAudio.current && event.audio_status !== "none") {
            void p.whenIdle().then(() =>
              socket.current?.send({
                type: "playback_report",
                message_id: event.message_id,
                first_audible_ms: counters.lastFirstAudibleMs,
                underruns: p.turnUnderruns(),
              }),
            );
          }
          void refreshConversations();
          break;
        }
      }
      dispatch({ type: "server", frame });
    },
    [refreshConversations],
  );

  const open = useCallback(
    (conversationId: string | null, newAgentId: string | null = null) => {
      socket.current?.close();
      player.current.flush();
      dispatch({ type: "reset", conversationId });
      setOlderMessages(null);
      if (conversationId) {
        api
          .latestMessages(conversationId)
          .then((page) => {
            dispatch({ type: "history", messages: page.results, older: false });
            setOlderMessages(page.previous);
          })
          .catch((error) => dispatch({ type: "notice", code: "not_found", message: `Could not load this conversation (${String(error)}).` }));
      }
      socket.current = new ConversationSocket(config.ws_path, conversationId, newAgentId, onFrame, setStatus);
    },
    [config.ws_path, onFrame],
  );

  useEffect(() => {
    window.__voicechat = { player: counters, conversationId: () => socket.current?.conversationId ?? null, connection: () => status };
  }, [status]);

  useEffect(() => {
    void refreshConversations();
    open(config.conversation_id, config.conversation_id ? null : agentId);
    const onPop = () => open(conversationFromUrl(), conversationFromUrl() ? null : agentId);
    window.addEventListener("popstate", onPop);
    return () => {
      window.removeEventListener("popstate", onPop);
      socket.current?.close();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps -- run once: later switches go through open()
  }, []);

  useEffect(() => {
    autoplayRef.current = autoplay;
    localStorage.setItem("voicechat.autoplay", String(autoplay));
    if (!autoplay) player.current.flush();
  }, [autoplay]);

  useEffect(() => {
    localStorage.setItem("voicechat.volume", String(volume));
    player.current.setVolume(volume);
  }, [volume]);

  useEffect(() => {
    const box = transcript.current;
    if (box && box.scrollHeight - box.scrollTop - box.clientHeight < 200) box.scrollTop = box.scrollHeight;
  }, [state.messages]);

  const send = () => {
    const text = draft.trim();
    if (!text || text.length > state.maxChars || status !== "open") return;
    const p = player.current;
    if (autoplay) void p.unlock(); // inside the gesture: autoplay rules and iOS allow sound from here on
    p.flush();
    acceptAudio.current = false; // until the server confirms the new turn, late audio of the old one is dropped
    p.startTurn();
    p.setVolume(volume);
    if (socket.current?.send({ type: "user_message", text })) setDraft("");
  };

  const stop = () => {
    acceptAudio.current = false;
    player.current.flush();
    socket.current?.send({ type: "interrupt" });
  };

  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === "Enter" && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      send();
    }
  };

  const replay = async (message: ChatMessage) => {
    if (!message.audio_url) return;
    const p = player.current;
    await p.unlock();
    acceptAudio.current = false;
    try {
      await p.playWav(await api.audio(message.audio_url));
    } catch (error) {
      dispatch({ type: "notice", code: "replay_failed", message: `Could not play the stored audio (${String(error)}).` });
    }
  };

  const switchTo = (id: string | null) => {
    history.pushState({ id }, "", id ? `/c/${id}/` : "/");
    open(id, id ? null : agentId);
  };

  const rename = async (id: string, title: string) => {
    setRenaming(null);
    if (!title.trim()) return;
    try {
      await api.rename(id, title.trim());
      await refreshConversations();
    } catch (error) {
      dispatch({ type: "notice", code: "rename_failed", message: String(error) });
    }
  };

  const remove = async (conversation: Conversation) => {
    if (!window.confirm(`Delete "${conversation.title || "this conversation"}" and its audio?`)) return;
    await api.remove(conversation.id);
    if (conversation.id === state.conversationId) switchTo(null);
    await refreshConversations();
  };

  const loadOlder = async () => {
    if (!olderMessages) return;
    const page = await api.messages(olderMessages);
    dispatch({ type: "history", messages: page.results, older: true });
    setOlderMessages(page.previous);
  };

  const loadMoreConversations = async () => {
    if (!moreConversations) return;
    const page = await api.conversations(moreConversations);
    setConversations((list) => [...list, ...page.results]);
    setMoreConversations(page.next);
  };

  const speaking = state.running || state.streamingId !== null;
  const overLimit = draft.length > state.maxChars;

  return (
    <div className="layout">
      <aside className="sidebar" aria-label="Conversations">
        <div className="new">
          {config.agents.length > 1 && (
            <label>
              Agent
              <select value={agentId} onChange={(e) => setAgentId(e.target.value)}>
                {config.agents.map((a) => (
                  <option key={a.id} value={a.id}>
                    {a.name}
                  </option>
                ))}
              </select>
            </label>
          )}
          <button type="button" onClick={() => switchTo(null)}>
            New conversation
          </button>
        </div>
        <ul className="conversations">
          {conversations.map((c) => (
            <li key={c.id} className={c.id === state.conversationId ? "current" : ""}>
              {renaming === c.id ? (
                <input
                  aria-label="New title"
                  defaultValue={c.title}
                  maxLength={200}
                  autoFocus
                  onBlur={(e) => void rename(c.id, e.target.value)}
                  onKeyDown={(e) => {
                    if (e.key === "Enter") void rename(c.id, e.currentTarget.value);
                    if (e.key === "Escape") setRenaming(null);
                  }}
                />
              ) : (
                <a
                  href={`/c/${c.id}/`}
                  aria-current={c.id === state.conversationId ? "page" : undefined}
                  onClick={(e) => {
                    e.preventDefault();
                    switchTo(c.id);
                  }}
                >
                  {c.title || "Untitled"}
                </a>
              )}
              <button type="button" className="icon" aria-label={`Rename ${c.title || "conversation"}`} onClick={() => setRenaming(c.id)}>
                ✎
              </button>
              <button type="button" className="icon" aria-label={`Delete ${c.title || "conversation"}`} onClick={() => void remove(c)}>
                ✕
              </button>
            </li>
          ))}
        </ul>
        {moreConversations && (
          <button type="button" onClick={() => void loadMoreConversations()}>
            More conversations
          </button>
        )}
      </aside>

      <section className="chat" aria-label="Conversation">
        <div className="toolbar">
          <span className={`connection ${status}`} role="status">
            {status === "open" ? "Connected" : status === "connecting" ? "Connecting…" : "Disconnected, retrying…"}
          </span>
          {speaking && (
            <span className="speaking" aria-label="The assistant is replying">
              ● speaking
            </span>
          )}
          <label>
            <input type="checkbox" checked={autoplay} onChange={(e) => setAutoplay(e.target.checked)} /> Auto-play
          </label>
          <label>
            Volume
            <input type="range" min="0" max="1" step="0.05" value={volume} onChange={(e) => setVolume(Number(e.target.value))} />
          </label>
        </div>

        <div className="notices">
          {state.notices.map((n) => (
            <div key={n.id} className="notice" role="alert">
              <span>{n.message}</span>
              <button type="button" aria-label="Dismiss" onClick={() => dispatch({ type: "dismiss", id: n.id })}>
                ✕
              </button>
            </div>
          ))}
        </div>

        <div
          className="transcript"
          ref={transcript}
          onScroll={(e) => {
            if (e.currentTarget.scrollTop < 40) void loadOlder();
          }}
        >
          {olderMessages && (
            <button type="button" className="older" onClick={() => void loadOlder()}>
              Load older messages
            </button>
          )}
          {state.messages.map((m) => (
            <article key={m.id} className={`message ${m.role}`} data-status={m.status} data-message-id={m.id}>
              <div className="body">{m.role === "assistant" ? <Markdown text={m.text} /> : <p>{m.text}</p>}</div>
              <footer>
                {m.status === "interrupted" && <span className="badge">interrupted</span>}
                {m.status === "failed" && <span className="badge error">failed</span>}
                {(m.audio_status === "failed" || m.audio_status === "partial") && <span className="badge">audio {m.audio_status}</span>}
                {m.role === "assistant" && m.audio_url && (
                  <button type="button" className="replay" onClick={() => void replay(m)} aria-label="Replay this reply">
                    ▶ Replay
                  </button>
                )}
              </footer>
            </article>
          ))}
        </div>
        <div className="sr-only" aria-live="polite">
          {state.announcement}
        </div>

        <form
          className="composer"
          onSubmit={(e) => {
            e.preventDefault();
            send();
          }}
        >
          <label htmlFor="composer-text" className="sr-only">
            Message
          </label>
          <textarea
            id="composer-text"
            value={draft}
            onChange={(e) => setDraft(e.target.value)}
            onKeyDown={onKeyDown}
            placeholder={status === "open" ? "Type a message — Enter sends, Shift+Enter for a new line" : "Waiting for the connection…"}
            disabled={status !== "open"}
            rows={2}
          />
          <span className={`counter ${overLimit ? "over" : ""}`} aria-live="polite">
            {draft.length}/{state.maxChars}
          </span>
          {speaking && (
            <button type="button" className="stop" onClick={stop}>
              Stop
            </button>
          )}
          <button type="submit" disabled={status !== "open" || !draft.trim() || overLimit}>
            Send
          </button>
        </form>
      </section>
    </div>
  );
}
