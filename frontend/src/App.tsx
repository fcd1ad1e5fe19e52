// The chat page: conversations on the side, the toolbar, the transcript and the composer. The open
// conversation (socket, frames, turn audio) lives in useConversation; replays in Replays; this file
// wires them to the page and keeps the settings a browser remembers.
import { useCallback, useEffect, useRef, useState } from "react";
import { api, type Agent, type Conversation as ConversationSummary } from "./api";
import type { ChatMessage } from "./chat";
import { Composer } from "./Composer";
import { indicator } from "./indicator";
import { Notices } from "./Notices";
import { sampleRateOf } from "./pcm";
import { Player } from "./player";
import { Sidebar } from "./Sidebar";
import { Toolbar } from "./Toolbar";
import { Transcript } from "./Transcript";
import { conversationPath, useConversation } from "./useConversation";
import { useNowPlaying, useReplay } from "./usePlayback";
import { VoicePicker } from "./VoicePicker";
import { probePreview, VoicePicker as Picker, VoicePreview } from "./voices";

export interface AppConfig {
  conversation_id: string | null;
  /** The user's most recently active conversation: where `/` lands a returning user. */
  latest_conversation_id?: string | null;
  ws_path: string;
  max_message_chars: number;
  agents: Agent[];
  username: string;
  /** The live audio format (pcm_<rate>), so the audio context is made at that rate with the page. */
  audio_format?: string;
  login_url?: string;
}

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

function conversationFromUrl(): string | null {
  return /^\/c\/([0-9a-f-]{36})\/?$/i.exec(location.pathname)?.[1] ?? null;
}

function liveRate(format: string | undefined): number {
  try {
    return sampleRateOf(format ?? "pcm_24000");
  } catch {
    return 24000;
  }
}

/** Where the page opens: the conversation in the URL; at `/`, the latest one, unless the user asked for a new one. */
function initialConversation(config: AppConfig): string | null {
  if (config.conversation_id) return config.conversation_id;
  const askedForNew = (history.state as { new?: boolean } | null)?.new === true;
  return askedForNew ? null : (config.latest_conversation_id ?? null);
}

export function App({ config, workletUrl, prebufferMs }: { config: AppConfig; workletUrl: string; prebufferMs?: number }) {
  const [player] = useState(() => new Player(workletUrl, prebufferMs));
  const [conversations, setConversations] = useState<ConversationSummary[]>([]);
  const [moreConversations, setMoreConversations] = useState<string | null>(null);
  const [draft, setDraft] = useState("");
  const [autoplay, setAutoplay] = useState(stored("autoplay", "true") === "true");
  const [volume, setVolume] = useState(storedVolume);
  const [agentId, setAgentId] = useState(config.agents.find((a) => a.is_default)?.id ?? config.agents[0]?.id ?? "");
  const [drawerOpen, setDrawerOpen] = useState(false);
  const autoplayRef = useRef(autoplay);
  autoplayRef.current = autoplay;
  const pickerRef = useRef<Picker | null>(null);

  const refreshConversations = useCallback(async () => {
    try {
      const page = await api.conversations();
      setConversations(page.results);
      setMoreConversations(page.next);
    } catch (error) {
      notice("network", `Could not load your conversations (${String(error)}). Check your connection and reload the page.`);
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps -- notice only dispatches
  }, []);

  const chat = useConversation({
    wsPath: config.ws_path,
    maxChars: config.max_message_chars,
    loginUrl: config.login_url ?? "/accounts/login/",
    player,
    speak: () => autoplayRef.current,
    onListChanged: () => void refreshConversations(),
    onVoiceLater: (id, voiceId) => void pickerRef.current?.created(id, voiceId),
    onVoiceRefused: () => pickerRef.current?.refused(),
  });
  const { state, dispatch, conversation, replays, replayFailed } = chat;
  const notice = (code: string, message: string) => dispatch({ type: "notice", code, message });
  const now = useNowPlaying(player);
  const replay = useReplay(replays);
  const [picker] = useState(() => new Picker({ api, route: (voiceId) => conversation.pickVoice(voiceId), notice }));
  pickerRef.current = picker;
  const [preview] = useState(
    () =>
      new VoicePreview({
        probe: probePreview,
        notice,
        onStart: () => {
          replays.stop(); // one sound at a time: the sample plays alone
          conversation.audio.stop();
        },
      }),
  );

  useEffect(() => {
    if (chat.openKey === 0) return; // not opened yet: the first open() below counts
    preview.stop();
    void picker.show(state.conversationId, state.conversationId ? null : agentId);
    // eslint-disable-next-line react-hooks/exhaustive-deps -- per open(): adopting a new conversation's id keeps the pick
  }, [chat.openKey]);

  useEffect(() => {
    player.prepare(liveRate(config.audio_format)); // with the page: no Send waits for the audio context
    const unlock = () => void player.unlock(); // the first click or key lets sound play (autoplay rules, iOS)
    document.addEventListener("pointerdown", unlock, { capture: true });
    document.addEventListener("keydown", unlock, { capture: true });
    void refreshConversations();
    const first = initialConversation(config);
    if (first !== conversationFromUrl()) history.replaceState({ id: first }, "", conversationPath(first));
    chat.open(first, first ? null : agentId);
    const onPop = () => chat.open(conversationFromUrl(), conversationFromUrl() ? null : agentId);
    window.addEventListener("popstate", onPop);
    return () => {
      window.removeEventListener("popstate", onPop);
      document.removeEventListener("pointerdown", unlock, { capture: true });
      document.removeEventListener("keydown", unlock, { capture: true });
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps -- once: later switches go through open()
  }, []);

  useEffect(() => {
    if (chat.refused) setDraft((current) => (current.trim() ? `${chat.refused?.text}\n${current}` : (chat.refused?.text ?? "")));
  }, [chat.refused]);

  useEffect(() => {
    remember("volume", String(volume));
    player.setVolume(volume);
  }, [volume, player]);

  const toggleAutoplay = (on: boolean) => {
    setAutoplay(on);
    remember("autoplay", String(on));
    conversation.setSpeak(on);
    if (on) void player.unlock();
  };

  const send = () => {
    const text = draft.trim();
    if (!text || text.length > state.maxChars) return;
    replays.stop(); // a replay gives way to the new reply
    preview.stop();
    if (conversation.send(text)) setDraft("");
  };

  const stop = () => {
    replays.stop();
    preview.stop();
    conversation.stop(state.running);
  };

  /** The agent for new conversations; the one on screen, if still new, starts over with it. */
  const chooseAgent = (id: string) => {
    setAgentId(id);
    if (state.conversationId === null) chat.open(null, id);
  };

  const switchTo = (id: string | null) => {
    setDrawerOpen(false);
    if (id === state.conversationId && id !== null) return;
    history.pushState(id ? { id } : { new: true }, "", conversationPath(id));
    chat.open(id, id ? null : agentId);
  };

  const rename = async (id: string, title: string) => {
    try {
      await api.rename(id, title);
      await refreshConversations();
    } catch (error) {
      notice("rename_failed", `Could not rename the conversation (${String(error)}). Try again.`);
    }
  };

  const remove = async (summary: ConversationSummary) => {
    if (!window.confirm(`Delete “${summary.title || "this conversation"}” with its messages and audio?`)) return;
    try {
      await api.remove(summary.id);
      if (summary.id === state.conversationId) switchTo(null);
      await refreshConversations();
    } catch (error) {
      notice("delete_failed", `Could not delete the conversation (${String(error)}). Try again.`);
    }
  };

  const loadMoreConversations = async () => {
    if (!moreConversations) return;
    try {
      const page = await api.conversations(moreConversations);
      setConversations((list) => [...list, ...page.results.filter((c) => !list.some((known) => known.id === c.id))]);
      setMoreConversations(page.next);
    } catch (error) {
      notice("network", `Could not load more conversations (${String(error)}). Try again.`);
    }
  };

  const playback = {
    player,
    now,
    replay,
    busy: state.running,
    onPlay: (message: ChatMessage, fromMs?: number) => {
      preview.stop();
      if (message.audio_url) void replays.play(message.id, message.audio_url, fromMs).catch(replayFailed);
    },
    onPause: () => replays.pause(),
    onSpeak: (message: ChatMessage) => {
      replays.stop();
      preview.stop();
      conversation.speak(message.id);
    },
  };

  const sounding = now.state !== "idle" && now.state !== "locked";
  const current = conversations.find((c) => c.id === state.conversationId);
  const agent = config.agents.find((a) => a.id === (current?.agent ?? agentId));
  const blocked = chat.ended ? "Disconnected: use Reconnect above, then send." : conversation.canSend ? null : "Reconnecting… you can send once the connection is back.";

  return (
    <div className={`layout${drawerOpen ? " drawer-open" : ""}`}>
      <Sidebar
        agents={config.agents}
        agentId={agentId}
        onAgent={chooseAgent}
        conversations={conversations}
        currentId={state.conversationId}
        hasMore={moreConversations !== null}
        onMore={() => void loadMoreConversations()}
        onOpen={switchTo}
        onRename={(id, title) => void rename(id, title)}
        onDelete={(c) => void remove(c)}
        open={drawerOpen}
        onClose={() => setDrawerOpen(false)}
      />

      <section className="chat" aria-label="Conversation">
        <Toolbar
          status={chat.status}
          ended={chat.ended}
          indicator={indicator(state, now, autoplay, replay?.messageId ?? null)}
          budget={state.budget}
          autoplay={autoplay}
          onAutoplay={toggleAutoplay}
          volume={volume}
          onVolume={setVolume}
          drawerOpen={drawerOpen}
          onDrawer={() => setDrawerOpen((open) => !open)}
          voice={<VoicePicker picker={picker} preview={preview} />}
        />
        <Notices notices={state.notices} onDismiss={(id) => dispatch({ type: "dismiss", id })} onReconnect={chat.reconnect} />
        <Transcript
          messages={state.messages}
          greeting={agent?.first_message ?? ""}
          hasOlder={chat.hasOlder}
          onOlder={chat.loadOlder}
          conversationKey={String(chat.openKey)}
          playback={playback}
        />
        <div className="sr-only announcer" aria-live="polite" aria-atomic="true">
          {state.announcement}
        </div>
        <Composer draft={draft} onDraft={setDraft} maxChars={state.maxChars} blocked={blocked} canStop={state.running || sounding} onSend={send} onStop={stop} />
      </section>
    </div>
  );
}
