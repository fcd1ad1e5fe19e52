// The React side of one open conversation: the chat state (reducer), the Conversation that owns the
// socket and interprets its frames, the history pages from the API, and the page address.
import { useCallback, useEffect, useMemo, useReducer, useRef, useState } from "react";
import { api } from "./api";
import { initialState, reducer } from "./chat";
import { Conversation } from "./conversation";
import { voicechat, type ConnectionState } from "./counters";
import type { Player } from "./player";
import { Replays } from "./replays";

export interface ConversationConfig {
  wsPath: string;
  maxChars: number;
  loginUrl: string;
  player: Player;
  /** Auto-play is on (read when a frame needs it, so a toggle takes effect at once). */
  speak: () => boolean;
  /** The conversation list changed (a conversation was created or got a message). */
  onListChanged: () => void;
  /** A voice picked while the first message was on its way: PATCH it onto the conversation that now exists. */
  onVoiceLater: (conversationId: string, voiceId: string) => void;
  /** The server refused the voice picked on the socket. */
  onVoiceRefused: () => void;
}

export function conversationPath(id: string | null): string {
  return id ? `/c/${id}/` : "/";
}

export function useConversation(config: ConversationConfig) {
  const [state, dispatch] = useReducer(reducer, initialState(null, config.maxChars));
  const [status, setStatus] = useState<ConnectionState>("idle");
  const [olderUrl, setOlderUrl] = useState<string | null>(null);
  const [refused, setRefused] = useState<{ text: string; serial: number } | null>(null);
  const [openKey, setOpenKey] = useState(0);
  const [ended, setEnded] = useState(false);
  const stateRef = useRef(state);
  stateRef.current = state;
  const viewing = useRef<string | null>(null); // answers for another conversation arrive late: drop them
  const configRef = useRef(config);
  configRef.current = config;

  const loadLatest = useCallback(async (conversationId: string) => {
    try {
      const page = await api.latestMessages(conversationId);
      if (viewing.current !== conversationId) return;
      dispatch({ type: "history", messages: page.results, older: false });
      setOlderUrl(page.previous);
    } catch (error) {
      dispatch({ type: "notice", code: "not_found", message: `Could not load this conversation (${String(error)}). Check your connection and reload the page.` });
    }
  }, []);

  const conversation = useMemo(
    () =>
      new Conversation({
        wsPath: config.wsPath,
        player: config.player,
        dispatch,
        state: () => stateRef.current,
        speak: () => configRef.current.speak(),
        events: {
          onConversation: (id) => {
            viewing.current = id;
            voicechat.connection.conversationId = id;
            if (location.pathname !== conversationPath(id)) history.replaceState({ id }, "", conversationPath(id));
          },
          onActivity: () => configRef.current.onListChanged(),
          onResync: (id) => void loadLatest(id),
          onRefused: (text) => setRefused((last) => ({ text, serial: (last?.serial ?? 0) + 1 })),
          onSessionEnded: () => {
            const next = encodeURI(location.pathname); // as Django writes it: /accounts/login/?next=/c/…/
            setTimeout(() => location.assign(`${configRef.current.loginUrl}?next=${next}`), 1500); // long enough to read why
          },
          onStatus: (next) => {
            voicechat.connection.status = next;
            setStatus(next);
          },
          onReplayStored: (id, url) => replayStored(id, url),
          onEnded: () => setEnded(true),
          onVoiceLater: (id, voiceId) => configRef.current.onVoiceLater(id, voiceId),
          onVoiceRefused: () => configRef.current.onVoiceRefused(),
        },
      }),
    // eslint-disable-next-line react-hooks/exhaustive-deps -- one Conversation for the page's lifetime
    [],
  );

  const replays = useMemo(() => new Replays(config.player, conversation.audio, api.audio), [config.player, conversation]);
  const replayFailed = useCallback((error: unknown) => {
    dispatch({ type: "notice", code: "replay_failed", message: `Could not play the stored audio (${String(error)}). Try again in a moment.` });
  }, []);
  const replayStored = (id: string, url: string) => void replays.play(id, url).catch(replayFailed);

  /** Show a conversation (null: a new one, which exists once its first message is saved) and connect. */
  const open = useCallback(
    (conversationId: string | null, agentId: string | null) => {
      replays.stop();
      dispatch({ type: "reset", conversationId });
      setOlderUrl(null);
      setOpenKey((key) => key + 1);
      viewing.current = conversationId;
      voicechat.connection.conversationId = conversationId;
      if (conversationId) void loadLatest(conversationId);
      setEnded(false);
      conversation.open(conversationId, agentId);
    },
    [conversation, loadLatest, replays],
  );

  const reconnect = useCallback(() => {
    setEnded(false);
    conversation.reconnect();
  }, [conversation]);

  const loadOlder = useCallback(async () => {
    if (!olderUrl) return;
    const conversationId = viewing.current;
    try {
      const page = await api.messages(olderUrl);
      if (viewing.current !== conversationId) return;
      dispatch({ type: "history", messages: page.results, older: true });
      setOlderUrl(page.previous);
    } catch (error) {
      dispatch({ type: "notice", code: "network", message: `Could not load older messages (${String(error)}). Scroll up again to retry.` });
    }
  }, [olderUrl]);

  useEffect(() => () => conversation.close(), [conversation]);

  return { state, dispatch, status, ended, conversation, replays, replayFailed, open, reconnect, hasOlder: olderUrl !== null, loadOlder, refused, openKey };
}
