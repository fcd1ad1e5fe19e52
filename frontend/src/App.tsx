// The chat page: conversations on the side, the streaming transcript, the composer and the player controls.
// This component owns the socket and the player and routes protocol frames to both (see docs/protocol.md).
import { useCallback, useEffect, useReducer, useRef, useState, type KeyboardEvent } from "react";
import { api, type Agent, type Conversation } from "./api";
import { voicechat, type ConnectionState } from "./hook";
import { sampleRateOf } from "./pcm";
import { counters, Player, type PlayerCounters } from "./player";
import { initialState, reducer, type ChatMessage, type ServerFrame } from "./protocol";
import { Sidebar } from "./Sidebar";
import { ConversationSocket } from "./socket";
import { Transcript } from "./Transcript";

export interface AppConfig {
  conversation_id: string | null;
  ws_path: string;
  max_message_chars: number;
  agents: Agent[];
  username: string;
}

const STATUS_TEXT: Record<ConnectionState, string> = {
  idle: "Ready",
  connecting: "Connecting…",
  open: "Connected",
  closed: "Disconnected, reconnecting…",
};

function stored(key: string, fallback: string): string {
  try {
    return localStorage.getItem(`voicechat.${key}`) ?? fallback;
  } catch {
    return fallback; // storage disabled: settings just are not remembered
  }
}

function remember(key: string, value: string): void {
  try {
    localStorage.setItem(`voicechat.${key}`, value);
  } catch {
    /* storage disabled or full */
  }
}

function storedVolume(): number {
  const value = Number(stored("volume", "1"));
  return Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : 1;
}

interface PendingReport {
  socket: ConversationSocket | null;
  messageId: string;
  serial: number;
}

function conversationFromUrl(): string | null {
  return /^\/c\/([0-9a-f-]{36})\/?$/i.exec(location.pathname)?.[1] ?? null;
}

export function App({ config, workletUrl, prebufferMs }: { config: AppConfig; workletUrl: string; prebufferMs?: number }) {
  const [state, dispatch] = useReducer(reducer, initialState(config.conversation_id, config.max_message_chars));
  const [status, setStatus] = useState<ConnectionState>("idle");
  const [conversations, setConversations] = useState<Conversation[]>([]);
  const [moreConversations, setMoreConversations] = useState<string | null>(null);
  const [olderMessages, setOlderMessages] = useState<string | null>(null);
  const [draft, setDraft] = useState("");
  const [autoplay, setAutoplay] = useState(stored("autoplay", "true") === "true");
  const [volume, setVolume] = useState(storedVolume);
  const [agentId, setAgentId] = useState(config.agents.find((a) => a.is_default)?.id ?? config.agents[0]?.id ?? "");
  const [playerState, setPlayerState] = useState<PlayerCounters["state"]>(counters.state);
  const [openKey, setOpenKey] = useState(0);
  const [playerInstance] = useState(() => new Player(workletUrl, prebufferMs));
  const player = useRef(playerInstance);
  const socket = useRef<ConversationSocket | null>(null);
  const openedOnce = useRef(false); // the current socket has been open (so "connecting" means reconnecting)
  const greeted = useRef(false); // the current socket has had its conversation_initiation_metadata
  // The audio side of the running turn: whether its audio plays, which reply it is, which one owes a report.
  const audio = useRef({ accept: false, replyId: null as string | null, reportFor: null as string | null, reportSerial: 0, supported: true });
  const autoplayRef = useRef(autoplay);
  const agentRef = useRef(agentId);
  const viewing = useRef(config.conversation_id); // answers for another conversation arrive late: drop them
  useEffect(() => {
    agentRef.current = agentId;
  }, [agentId]);

  // A finished turn's playback_report waits until its audio has played out (or the user moved on).
  const pendingReports = useRef(new Set<PendingReport>());
  const sendReport = useCallback((report: PendingReport) => {
    if (!pendingReports.current.delete(report)) return; // sent already
    const heard = player.current.turnSummary(report.serial);
    report.socket?.send({ type: "playback_report", message_id: report.messageId, first_audible_ms: heard.firstAudibleMs, underruns: heard.underruns });
  }, []);

  const notice = (code: string, message: string) => dispatch({ type: "notice", code, message });

  const refreshConversations = useCallback(async () => {
    try {
      const page = await api.conversations();
      setConversations(page.results);
      setMoreConversations(page.next);
    } catch (error) {
      dispatch({ type: "notice", code: "network", message: `Could not load your conversations (${String(error)}).` });
    }
  }, []);

  const loadLatest = useCallback(async (conversationId: string) => {
    try {
      const page = await api.latestMessages(conversationId);
      if (viewing.current !== conversationId) return;
      dispatch({ type: "history", messages: page.results, older: false });
      setOlderMessages(page.previous);
    } catch (error) {
      dispatch({ type: "notice", code: "not_found", message: `Could not load this conversation (${String(error)}).` });
    }
  }, []);

  const onFrame = useCallback(
    (frame: ServerFrame) => {
      const p = player.current;
      const turn = audio.current;
      switch (frame.type) {
        case "conversation_initiation_metadata": {
          const meta = frame.conversation_initiation_metadata_event;
          try {
            p.setLiveRate(sampleRateOf(meta.agent_output_audio_format));
            turn.supported = true;
          } catch {
            turn.supported = false;
            dispatch({ type: "notice", code: "audio_format", message: `This browser client cannot play ${meta.agent_output_audio_format}; replies are shown as text only.` });
          }
          voicechat.connection.conversationId = meta.conversation_id;
          viewing.current = meta.conversation_id;
          if (conversationFromUrl() !== meta.conversation_id) {
            history.replaceState({ id: meta.conversation_id }, "", `/c/${meta.conversation_id}/`);
            void refreshConversations();
          } else if (greeted.current) {
            void loadLatest(meta.conversation_id); // a reconnect: pick up what happened meanwhile
          }
          greeted.current = true;
          break;
        }
        case "user_transcript":
          turn.accept = autoplayRef.current && turn.supported && p.unlocked; // a new turn: its audio is welcome
          turn.replyId = null;
          void refreshConversations(); // the first message names the conversation
          break;
        case "agent_chat_response_part":
          if (frame.text_response_part.type === "start") {
            turn.replyId = frame.text_response_part.message_id;
            turn.reportFor = turn.accept ? turn.replyId : null;
            turn.reportSerial = p.turnSerial;
          }
          break;
        case "audio":
          if (turn.accept) p.pushBase64(frame.audio_event.audio_base_64);
          break;
        case "interruption":
          if (frame.interruption_event.message_id === turn.replyId) {
            turn.accept = false; // anything of this turn that still arrives is dropped
            p.flush();
          }
          break;
        case "agent_response_complete": {
          const event = frame.agent_response_complete_event;
          if (event.message_id === turn.replyId) {
            turn.accept = false;
            p.end(); // no more audio of this turn: play out the queue, then go idle
          }
          if (turn.reportFor === event.message_id) {
            turn.reportFor = null;
            const report = { socket: socket.current, messageId: event.message_id, serial: turn.reportSerial };
            pendingReports.current.add(report);
            void p.whenIdle().then(() => sendReport(report));
          }
          break;
        }
      }
      dispatch({ type: "server", frame });
    },
    [refreshConversations, loadLatest, sendReport],
  );

  const onStatus = useCallback((next: ConnectionState) => {
    if (next === "open") openedOnce.current = true;
    if (next === "closed") {
      dispatch({ type: "disconnected" });
      player.current.end(); // what is queued plays out; the server has stopped the turn
    }
    voicechat.connection.status = next;
    setStatus(next);
  }, []);

  const connect = useCallback(
    (conversationId: string | null) => {
      openedOnce.current = false;
      greeted.current = false;
      socket.current = new ConversationSocket(config.ws_path, conversationId, conversationId ? null : agentRef.current, {
        onFrame,
        onStatus,
        onRefused: () =>
          dispatch({ type: "notice", code: "connection_refused", message: "The server refused this conversation. It may have been deleted, or you were logged out: reload the page." }),
      });
    },
    [config.ws_path, onFrame, onStatus],
  );

  /** Show a conversation (or a fresh one, which connects, and so is created, once the user starts typing). */
  const open = useCallback(
    (conversationId: string | null) => {
      pendingReports.current.forEach(sendReport); // each on the socket of its own conversation
      socket.current?.close();
      socket.current = null;
      player.current.flush();
      audio.current.accept = false;
      dispatch({ type: "reset", conversationId });
      setOlderMessages(null);
      setOpenKey((key) => key + 1);
      voicechat.connection.conversationId = conversationId;
      viewing.current = conversationId;
      if (conversationId) {
        void loadLatest(conversationId);
        connect(conversationId);
      } else {
        onStatus("idle");
      }
    },
    [connect, loadLatest, onStatus, sendReport],
  );

  const ensureSocket = () => {
    if (!socket.current) connect(null);
  };

  useEffect(() => {
    void refreshConversations();
    open(config.conversation_id);
    const onPop = () => open(conversationFromUrl());
    window.addEventListener("popstate", onPop);
    return () => {
      window.removeEventListener("popstate", onPop);
      socket.current?.close();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps -- once: later switches go through open()
  }, []);

  useEffect(() => player.current.subscribe(setPlayerState), []);

  useEffect(() => {
    autoplayRef.current = autoplay;
    remember("autoplay", String(autoplay));
    if (!autoplay) {
      audio.current.accept = false;
      player.current.flush();
    }
  }, [autoplay]);

  useEffect(() => {
    remember("volume", String(volume));
    player.current.setVolume(volume);
  }, [volume]);

  const canSend = status !== "closed" && !(status === "connecting" && openedOnce.current);

  const send = () => {
    const text = draft.trim();
    if (!text || text.length > state.maxChars || !canSend) return;
    const p = player.current;
    if (autoplay) void p.unlock(); // inside the gesture: autoplay rules and iOS allow sound from here on
    p.flush(); // a reply still speaking stops now; the server interrupts its turn when this message lands
    audio.current.accept = false; // until the server confirms the new turn, late audio of the old one is dropped
    audio.current.replyId = null;
    p.startTurn();
    ensureSocket();
    if (socket.current?.send({ type: "user_message", text })) setDraft("");
  };

  const stop = () => {
    audio.current.accept = false;
    player.current.flush();
    if (state.running) socket.current?.send({ type: "interrupt" });
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
    const unlocked = p.unlock(); // synchronously inside the click, before any await
    audio.current.accept = false; // a live reply's remaining audio gives way to the replay
    audio.current.reportFor = null;
    try {
      const data = await api.audio(message.audio_url);
      await unlocked;
      await p.playWav(data);
    } catch (error) {
      notice("replay_failed", `Could not play the stored audio (${String(error)}).`);
    }
  };

  const switchTo = (id: string | null) => {
    if (id === state.conversationId && id !== null) return;
    history.pushState({ id }, "", id ? `/c/${id}/` : "/");
    open(id);
  };

  const rename = async (id: string, title: string) => {
    try {
      await api.rename(id, title);
      await refreshConversations();
    } catch (error) {
      notice("rename_failed", `Could not rename the conversation (${String(error)}).`);
    }
  };

  const remove = async (conversation: Conversation) => {
    if (!window.confirm(`Delete “${conversation.title || "this conversation"}” with its messages and audio?`)) return;
    try {
      await api.remove(conversation.id);
      if (conversation.id === state.conversationId) switchTo(null);
      await refreshConversations();
    } catch (error) {
      notice("delete_failed", `Could not delete the conversation (${String(error)}).`);
    }
  };

  const loadOlder = async () => {
    if (!olderMessages) return;
    const conversationId = viewing.current;
    try {
      const page = await api.messages(olderMessages);
      if (viewing.current !== conversationId) return;
      dispatch({ type: "history", messages: page.results, older: true });
      setOlderMessages(page.previous);
    } catch (error) {
      notice("network", `Could not load older messages (${String(error)}).`);
    }
  };

  const loadMoreConversations = async () => {
    if (!moreConversations) return;
    try {
      const page = await api.conversations(moreConversations);
      setConversations((list) => [...list, ...page.results.filter((c) => !list.some((known) => known.id === c.id))]);
      setMoreConversations(page.next);
    } catch (error) {
      notice("network", `Could not load more conversations (${String(error)}).`);
    }
  };

  const playing = playerState === "buffering" || playerState === "playing" || playerState === "draining";
  const speaking = state.running || playing;
  const overLimit = draft.length > state.maxChars;
  const current = conversations.find((c) => c.id === state.conversationId);
  const agent = config.agents.find((a) => a.id === (current?.agent ?? agentId));

  return (
    <div className="layout">
      <Sidebar
        agents={config.agents}
        agentId={agentId}
        onAgent={setAgentId}
        conversations={conversations}
        currentId={state.conversationId}
        hasMore={moreConversations !== null}
        onMore={() => void loadMoreConversations()}
        onOpen={switchTo}
        onRename={(id, title) => void rename(id, title)}
        onDelete={(c) => void remove(c)}
      />

      <section className="chat" aria-label="Conversation">
        <div className="toolbar">
          <span className={`connection ${status}`} role="status" data-testid="connection">
            {STATUS_TEXT[status]}
          </span>
          {speaking && (
            <span className="speaking" role="img" aria-label="The assistant is speaking">
              <span aria-hidden="true">● speaking</span>
            </span>
          )}
          <span className="spacer" />
          <label className="autoplay">
            <input type="checkbox" checked={autoplay} onChange={(e) => setAutoplay(e.target.checked)} /> Auto-play
          </label>
          <label className="volume">
            Volume
            <input type="range" min="0" max="1" step="0.05" value={volume} onChange={(e) => setVolume(Number(e.target.value))} />
          </label>
        </div>

        {state.notices.length > 0 && (
          <div className="notices">
            {state.notices.map((n) => (
              <div key={n.id} className="notice" role="alert" data-code={n.code}>
                <span>{n.message}</span>
                <button type="button" className="icon" aria-label="Dismiss this notice" onClick={() => dispatch({ type: "dismiss", id: n.id })}>
                  ✕
                </button>
              </div>
            ))}
          </div>
        )}

        <Transcript
          messages={state.messages}
          greeting={agent?.first_message ?? ""}
          hasOlder={olderMessages !== null}
          onOlder={loadOlder}
          onReplay={(m) => void replay(m)}
          conversationKey={String(openKey)}
        />
        <div className="sr-only" aria-live="polite" aria-atomic="true">
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
            onChange={(e) => {
              setDraft(e.target.value);
              if (e.target.value.trim()) ensureSocket(); // a new conversation connects while the user types
            }}
            onKeyDown={onKeyDown}
            placeholder={canSend ? "Type a message — Enter sends, Shift+Enter adds a line" : "Waiting for the connection…"}
            disabled={!canSend}
            aria-describedby="composer-counter"
            rows={2}
          />
          <span id="composer-counter" className={`counter ${overLimit ? "over" : ""}`}>
            <span className="sr-only">Characters used: </span>
            {draft.length}/{state.maxChars}
          </span>
          <div className="actions">
            {speaking && (
              <button type="button" className="stop" onClick={stop}>
                Stop
              </button>
            )}
            <button type="submit" disabled={!canSend || !draft.trim() || overLimit}>
              Send
            </button>
          </div>
        </form>
      </section>
    </div>
  );
}
