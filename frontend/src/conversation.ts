// One open conversation: its socket, its turn audio, and the one place where every server frame is
// interpreted (handle()): each frame becomes chat actions for the reducer and commands for the player.
// No React here, so scripted frames test it (conversation.test.ts).
import { GREETING_ID, type Action, type ChatState } from "./chat";
import type { ConnectionState } from "./counters";
import { endsVoice, errorSentence } from "./errors";
import { sampleRateOf } from "./pcm";
import type { Player } from "./player";
import type { ClientFrame, Incoming, WordTiming } from "./protocol";
import { ConversationSocket, type EndReason } from "./socket";
import { TurnAudio } from "./turnAudio";
import type { VoiceRoute } from "./voices";

export interface ConversationEvents {
  /** The conversation on screen exists on the server now (its first message was saved). */
  onConversation: (conversationId: string) => void;
  /** The socket reconnected to a conversation: load what happened while it was away. */
  onResync: (conversationId: string) => void;
  /** A message the user sent was refused: give its text back to the composer. */
  onRefused: (text: string) => void;
  /** The session ended (logged out elsewhere, password changed): the page must sign in again. */
  onSessionEnded: () => void;
  onStatus: (status: ConnectionState) => void;
  /** A message was saved in the conversation (the conversation list reorders). */
  onActivity: () => void;
  /** The connection ended for good (see EndReason): it reconnects only when asked to. */
  onEnded: (reason: EndReason) => void;
  /** A stored reply should play from storage (an on-demand Play of a reply that already had audio). */
  onReplayStored: (messageId: string, audioUrl: string) => void;
  /** A voice picked while the first message was on its way: store it on the conversation that exists now. */
  onVoiceLater?: (conversationId: string, voiceId: string) => void;
  /** The server refused the voice picked on the socket: the conversation speaks with the agent's own. */
  onVoiceRefused?: () => void;
}

export interface ConversationOptions {
  wsPath: string;
  player: Player;
  dispatch: (action: Action) => void;
  /** The current chat state (for the limits that error sentences quote). */
  state: () => ChatState;
  /** Auto-play is on: replies are spoken as they arrive. */
  speak: () => boolean;
  events: ConversationEvents;
}

const now = () => new Date().toISOString();

export class Conversation {
  readonly audio: TurnAudio;
  private socket: ConversationSocket | null = null;
  private conversationId: string | null = null;
  private agentId: string | null = null;
  /** The id the server announced for a conversation it creates with the first message. */
  private announcedId: string | null = null;
  private greeted = false; // the current socket has had conversation_initiation_metadata before
  private openedOnce = false;
  /** Text sent and not yet confirmed by user_transcript: given back if the server refuses it. */
  private pending: string | null = null;
  /** The running turn answers this page's own message (another tab's turns are only shown here). */
  private ownTurn = false;
  /** Replies whose audio was asked for with Play (a `speak` frame), until their completion. */
  private speakRequests = new Set<string>();
  private status: ConnectionState = "idle";
  /** The voice picked for a conversation not created yet: sent on every (re)connect until it exists. */
  private voiceOverride: string | null = null;
  /** A voice picked while the first message was on its way (the conversation is being created). */
  private voiceLater: string | null = null;

  constructor(private options: ConversationOptions) {
    this.audio = new TurnAudio(options.player);
  }

  /** Connect to `conversationId`, or to a new conversation with `agentId` (created on its first message). */
  open(conversationId: string | null, agentId: string | null): void {
    this.close();
    this.conversationId = conversationId;
    this.agentId = agentId;
    this.announcedId = null;
    this.voiceOverride = this.voiceLater = null;
    this.connect();
  }

  close(): void {
    this.audio.flushReports(); // each on the socket of its own conversation
    this.socket?.close();
    this.socket = null;
    this.audio.stop();
    this.pending = null;
    this.speakRequests.clear();
  }

  /** After the server ended the connection (another tab took over, a refused override): try again. */
  reconnect(): void {
    this.options.dispatch({ type: "dismiss_code", code: "too_many_connections" });
    this.options.dispatch({ type: "dismiss_code", code: "connection_refused" });
    this.socket?.close();
    this.connect();
  }

  /** Whether a message can be sent now (never while reconnecting: it would be lost). */
  get canSend(): boolean {
    return this.status === "open" || (this.status === "connecting" && !this.openedOnce);
  }

  /** Send the user's message; call inside the Send key/click. False when it could not be sent. */
  send(text: string): boolean {
    if (!this.socket || !this.canSend) return false;
    this.audio.begin(); // first: the first sound is measured from the Send, whatever unlocking costs
    if (this.options.speak()) void this.options.player.unlock();
    if (!this.socket.send({ type: "user_message", text })) return false;
    this.pending = text;
    return true;
  }

  /** Stop speaking now and stop the running turn on the server. */
  stop(running: boolean): void {
    this.audio.stop();
    if (running) this.socket?.send({ type: "interrupt" });
  }

  /** Auto-play switched: the server skips speech for later turns when it is off. */
  setSpeak(speak: boolean): void {
    if (!speak) this.audio.stop();
    this.socket?.send({ type: "settings", speak });
  }

  /** Play a stored reply that has no audio yet: the server makes it once and streams it here. */
  speak(messageId: string): boolean {
    if (!this.socket) return false;
    void this.options.player.unlock(); // inside the click
    this.audio.beginUnmeasured(messageId, true);
    if (!this.socket.send({ type: "speak", message_id: messageId })) return false;
    this.speakRequests.add(messageId);
    this.options.dispatch({ type: "synthesizing", id: messageId });
    return true;
  }

  /**
   * The user picked `voiceId` (always an id, the agent's own included). A stored conversation is PATCHed by
   * the caller; a new one gets it on the socket, which applies it to the next reply and keeps it when the
   * first message creates the conversation. While that first message is on its way, the row is being
   * written: the pick waits for it and is PATCHed then.
   */
  pickVoice(voiceId: string): VoiceRoute {
    if (this.conversationId) return { via: "patch", conversationId: this.conversationId };
    if (this.pending !== null) {
      this.voiceLater = voiceId;
      return { via: "later" };
    }
    this.voiceOverride = voiceId;
    this.socket?.send(this.initiation());
    return { via: "socket" };
  }

  private initiation(): ClientFrame {
    const frame: ClientFrame = { type: "conversation_initiation_client_data", voicechat: { binary_audio: true, speak: this.options.speak() } };
    if (this.voiceOverride && !this.conversationId) frame.conversation_config_override = { tts: { voice_id: this.voiceOverride } };
    return frame;
  }

  private connect(): void {
    this.greeted = false;
    this.openedOnce = false;
    this.socket = new ConversationSocket(this.options.wsPath, this.conversationId, this.conversationId ? null : this.agentId, {
      onFrame: (frame) => this.handle(frame),
      onStatus: (status) => this.onStatus(status),
      initiation: () => this.initiation(),
      onRefused: () =>
        this.notice("connection_refused", "The server refused this conversation. It may have been deleted, or you were signed out: reload the page.", "reload"),
      onEnded: (reason) => this.onEnded(reason),
    });
  }

  private onStatus(status: ConnectionState): void {
    if (status === "open") this.openedOnce = true;
    if (status === "closed") {
      this.options.dispatch({ type: "disconnected" });
      this.options.player.end(); // what is queued plays out; the server has stopped the turn
      this.giveBack();
    }
    this.status = status;
    this.options.events.onStatus(status);
  }

  private onEnded(reason: EndReason): void {
    const { maxChars } = this.options.state();
    this.options.events.onEnded(reason);
    if (reason === "session_ended") {
      this.notice("session_ended", errorSentence("session_ended", "", { maxChars }));
      this.options.events.onSessionEnded();
    } else if (reason === "too_many_connections") {
      this.notice("too_many_connections", errorSentence("too_many_connections", "", { maxChars }), "reconnect");
    } else {
      this.notice("connection_refused", "The server closed this conversation and would refuse it again. Reload the page; if that does not help, tell the site's administrator.", "reconnect");
    }
  }

  /** The one place a server frame is interpreted. */
  handle(frame: Incoming): void {
    const { dispatch } = this.options;
    switch (frame.type) {
      case "conversation_initiation_metadata": {
        const meta = frame.conversation_initiation_metadata_event;
        try {
          this.options.player.setLiveRate(sampleRateOf(meta.agent_output_audio_format));
          this.audio.supported = true;
        } catch {
          this.audio.supported = false;
          this.notice("audio_format", `This browser client cannot play ${meta.agent_output_audio_format}, so replies are shown as text only.`);
        }
        if (!this.conversationId) this.announcedId = meta.conversation_id;
        else if (this.greeted) this.options.events.onResync(this.conversationId); // a reconnect
        this.greeted = true;
        dispatch({ type: "opened", maxChars: meta.max_message_chars, budget: meta.speech_budget ?? null });
        break;
      }
      case "user_transcript": {
        const event = frame.user_transcription_event;
        const ours = this.pending !== null;
        this.pending = null;
        this.ownTurn = ours;
        if (ours) this.audio.confirmed(this.options.speak());
        this.adopt(event.conversation_id ?? this.announcedId);
        dispatch({ type: "user_message", id: event.message_id, text: event.user_transcript, voiceExpected: ours && this.audio.live, at: now() });
        this.options.events.onActivity();
        break;
      }
      case "agent_chat_response_part": {
        const part = frame.text_response_part;
        if (part.type === "start") {
          if (this.ownTurn) this.audio.reply(part.message_id);
          this.ownTurn = false;
          dispatch({ type: "reply_started", id: part.message_id, at: now() });
        } else if (part.type === "delta") {
          dispatch({ type: "reply_text", id: part.message_id, delta: part.text });
        } else {
          dispatch({ type: "reply_written", id: part.message_id });
        }
        break;
      }
      case "audio":
        this.words(this.audio.messageId, frame.audio_event.words);
        this.audio.pushBase64(frame.audio_event.audio_base_64);
        break;
      case "binary_audio":
        this.audio.pushBytes(frame.pcm);
        break;
      case "audio_alignment": {
        const event = frame.audio_alignment_event;
        this.words(event.message_id ?? this.audio.messageId, event.words);
        break;
      }
      case "agent_response": {
        const event = frame.agent_response_event;
        if (event.greeting) {
          this.audio.beginUnmeasured(GREETING_ID, this.options.speak());
          dispatch({ type: "reply_started", id: GREETING_ID, at: now(), greeting: true, text: event.agent_response });
          dispatch({ type: "reply_full_text", id: GREETING_ID, text: event.agent_response, announce: true });
        } else if (event.message_id) {
          dispatch({ type: "reply_full_text", id: event.message_id, text: event.agent_response, announce: true });
        }
        break;
      }
      case "interruption":
        this.audio.interrupted(frame.interruption_event.message_id);
        dispatch({ type: "reply_interrupted", id: frame.interruption_event.message_id });
        break;
      case "agent_response_correction": {
        const event = frame.agent_response_correction_event;
        dispatch({ type: "reply_full_text", id: event.message_id, text: event.corrected_agent_response, announce: false });
        break;
      }
      case "agent_response_complete":
        this.completed(frame.agent_response_complete_event);
        break;
      case "queued":
        dispatch({ type: "queued", messageId: frame.queued_event.message_id, position: frame.queued_event.position });
        break;
      case "budget": {
        const { event_id: _, ...budget } = frame.budget_event;
        dispatch({ type: "budget", budget });
        break;
      }
      case "error":
        this.error(frame.error_event.code, frame.error_event.message, frame.error_event.retry_after);
        break;
      case "ping":
        break; // the socket answered it
    }
  }

  private completed(event: Extract<Incoming, { type: "agent_response_complete" }>["agent_response_complete_event"]): void {
    const id = event.message_id ?? (event.greeting ? GREETING_ID : null);
    if (!id) return;
    const played = this.audio.completed(id, (report) => this.deliver(report));
    const requested = this.speakRequests.delete(id);
    this.options.dispatch({
      type: "reply_completed",
      id,
      status: event.status,
      audioStatus: event.audio_status ?? (event.audio_url ? "complete" : undefined),
      audioUrl: event.audio_url,
      durationMs: event.metrics?.audio_duration_ms,
      words: event.words,
      endsTurn: !requested && !event.greeting,
    });
    // A Play of a reply whose audio was stored meanwhile (another tab asked first) comes back at once.
    if (requested && !played && event.audio_url) this.options.events.onReplayStored(id, event.audio_url);
  }

  private error(code: string, message: string, retryAfter?: number | null): void {
    const state = this.options.state();
    if (code === "override_not_allowed" && this.voiceOverride !== null) {
      // The socket closes and reconnects by itself: without the refused voice, so it is not refused again.
      this.voiceOverride = null;
      this.options.events.onVoiceRefused?.();
      return;
    }
    if (endsVoice(code)) this.options.dispatch({ type: "voice_lost" });
    if (code === "budget_exhausted" || code === "site_budget_exhausted") {
      this.options.dispatch({ type: "budget_exhausted", site: code === "site_budget_exhausted" });
    }
    this.notice(code, errorSentence(code, message, { maxChars: state.maxChars, retryAfter, resetsAt: state.budget?.resets_at }));
    // Frames are ordered: an error before the sent message's user_transcript is that message refused.
    this.giveBack();
  }

  private giveBack(): void {
    if (this.pending === null) return;
    this.options.events.onRefused(this.pending);
    this.pending = null;
    if (this.voiceLater !== null && !this.conversationId) {
      this.voiceOverride = this.voiceLater; // no conversation was created: the pick goes on the socket after all
      this.voiceLater = null;
      this.socket?.send(this.initiation());
    }
  }

  private words(messageId: string | null, words: WordTiming[] | undefined): void {
    if (messageId && words?.length) this.options.dispatch({ type: "reply_words", id: messageId, words });
  }

  /** The conversation exists now: reconnects resume it, and the page shows its address. */
  private adopt(conversationId: string | null): void {
    if (!conversationId || conversationId === this.conversationId) return;
    this.conversationId = conversationId;
    if (this.socket) this.socket.conversationId = conversationId;
    this.voiceOverride = null; // stored with the conversation now; reconnects resume it with its voice
    this.options.dispatch({ type: "conversation", conversationId });
    this.options.events.onConversation(conversationId);
    const later = this.voiceLater;
    this.voiceLater = null;
    if (later !== null) this.options.events.onVoiceLater?.(conversationId, later);
  }

  private deliver(frame: ClientFrame): void {
    this.socket?.send(frame);
  }

  private notice(code: string, message: string, action?: "reconnect" | "reload"): void {
    this.options.dispatch({ type: "notice", code, message, action });
  }
}
