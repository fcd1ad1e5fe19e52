// The voice picker's logic: the voices an agent offers, the one a conversation speaks with, where a pick
// goes (a PATCH for a stored conversation; the socket for one not created yet) and the preview player's
// states. No React here, so tests drive it (voices.test.ts); VoicePicker.tsx shows it.
import { ApiError, type Conversation as ConversationRow, type VoiceOption } from "./api";

export type { VoiceOption };

/** Where a voice picked now goes; the open Conversation decides, as it knows whether its row exists. */
export type VoiceRoute =
  | { via: "patch"; conversationId: string }
  | { via: "socket" } // sent as conversation_initiation_client_data: stored when the conversation is created
  | { via: "later" }; // the first message is on its way: stored by PATCH once the conversation exists

export interface PickerState {
  /** The voices offered for the conversation on screen, the agent's own first. */
  choices: VoiceOption[];
  /** The voice_id shown as chosen: the conversation's, or the agent's own when it picks none. */
  selected: string;
  /** A pick is being saved; the select waits for it. */
  saving: boolean;
}

export interface PickerApi {
  conversation(id: string): Promise<Pick<ConversationRow, "agent" | "voice_id">>;
  voices(agentId: string): Promise<VoiceOption[]>;
  setVoice(conversationId: string, voiceId: string): Promise<Pick<ConversationRow, "voice_id">>;
}

export interface PickerDeps {
  api: PickerApi;
  /** Hand a pick to the open conversation, which sends it on its socket or says where to PATCH. */
  route(voiceId: string): VoiceRoute;
  notice(code: string, message: string): void;
}

/** "Rachel · premade · en", with the agent's own voice marked. */
export function voiceLabel(voice: VoiceOption): string {
  const details = [voice.category, voice.language].filter(Boolean);
  const name = voice.is_default ? `${voice.name} (agent's voice)` : voice.name;
  return [name, ...details].join(" · ");
}

function defaultVoice(choices: VoiceOption[]): VoiceOption | undefined {
  return choices.find((c) => c.is_default) ?? choices[0];
}

/** The option a stored voice_id shows as: blank is the agent's own voice. */
export function shownVoice(choices: VoiceOption[], stored: string): string {
  return stored || (defaultVoice(choices)?.voice_id ?? "");
}

/** The picker shows only when there is a choice to make. */
export function offersChoice(choices: VoiceOption[]): boolean {
  return choices.length > 1;
}

const EMPTY: PickerState = { choices: [], selected: "", saving: false };

export class VoicePicker {
  private state: PickerState = EMPTY;
  /** The voice the server has (or will store on creation): what a failed save goes back to. */
  private confirmed = "";
  /** Counts show() calls: an answer for a conversation no longer on screen is dropped. */
  private serial = 0;
  private listeners = new Set<() => void>();
  private voiceLists = new Map<string, Promise<VoiceOption[]>>();

  constructor(private deps: PickerDeps) {}

  current(): PickerState {
    return this.state;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Show the voices of a stored conversation (with its pick), or of a new one with `agentId`. */
  async show(conversationId: string | null, agentId: string | null): Promise<void> {
    const serial = ++this.serial;
    this.confirmed = "";
    this.set(EMPTY);
    try {
      const row = conversationId ? await this.deps.api.conversation(conversationId) : null;
      const agent = row?.agent ?? agentId;
      if (!agent) return;
      const choices = await this.voices(agent);
      if (serial !== this.serial) return;
      this.confirmed = shownVoice(choices, row?.voice_id ?? "");
      this.set({ choices, selected: this.confirmed, saving: false });
    } catch (error) {
      if (serial !== this.serial || (error instanceof ApiError && error.status === 404)) return; // gone: the page says so
      this.deps.notice("voices_unavailable", `Could not load the voices you can pick (${String(error)}). Replies keep their voice; reload the page to pick another.`);
    }
  }

  /** The user picked `voiceId` in the select. */
  async choose(voiceId: string): Promise<void> {
    const { choices, selected, saving } = this.state;
    const option = choices.find((c) => c.voice_id === voiceId);
    if (!option || saving || voiceId === selected) return;
    const route = this.deps.route(voiceId);
    if (route.via !== "patch") {
      if (route.via === "socket") this.confirmed = voiceId;
      this.set({ ...this.state, selected: voiceId });
      return;
    }
    await this.save(route.conversationId, option);
  }

  /** A pick made while the first message was on its way, stored now that its conversation exists. */
  async created(conversationId: string, voiceId: string): Promise<void> {
    const option = this.state.choices.find((c) => c.voice_id === voiceId);
    if (option) await this.save(conversationId, option);
  }

  /** The server refused the voice this page sent on the socket: the conversation speaks with the agent's. */
  refused(): void {
    const own = defaultVoice(this.state.choices);
    const picked = this.state.choices.find((c) => c.voice_id === this.state.selected);
    this.confirmed = own?.voice_id ?? "";
    this.set({ ...this.state, selected: this.confirmed, saving: false });
    if (picked && own && picked !== own) {
      this.deps.notice("voice_not_saved", `The server refused the voice ${picked.name} for this conversation, so replies speak as ${own.name}.`);
    }
  }

  private async save(conversationId: string, option: VoiceOption): Promise<void> {
    const serial = this.serial;
    this.set({ ...this.state, selected: option.voice_id, saving: true });
    try {
      const row = await this.deps.api.setVoice(conversationId, option.is_default ? "" : option.voice_id);
      if (serial !== this.serial) return;
      this.confirmed = shownVoice(this.state.choices, row.voice_id);
    } catch (error) {
      if (serial !== this.serial) return;
      this.deps.notice("voice_not_saved", notSavedSentence(option, this.nameOf(this.confirmed), error));
    }
    this.set({ ...this.state, selected: this.confirmed, saving: false });
  }

  private nameOf(voiceId: string): string {
    return this.state.choices.find((c) => c.voice_id === voiceId)?.name ?? "before";
  }

  private voices(agentId: string): Promise<VoiceOption[]> {
    let list = this.voiceLists.get(agentId);
    if (!list) {
      list = this.deps.api.voices(agentId);
      list.catch(() => this.voiceLists.delete(agentId)); // a failure is not remembered: the next open asks again
      this.voiceLists.set(agentId, list);
    }
    return list;
  }

  private set(state: PickerState): void {
    this.state = state;
    this.listeners.forEach((listener) => listener());
  }
}

function notSavedSentence(option: VoiceOption, keptName: string, error: unknown): string {
  const kept = `Replies keep speaking as ${keptName}.`;
  if (error instanceof ApiError && error.status === 400) {
    const why = error.fieldMessage("voice_id") ?? "the server refused it.";
    return `Could not switch to ${option.name}: ${why} ${kept}`;
  }
  return `Could not switch to ${option.name} (${String(error)}). ${kept} Try again in a moment.`;
}

// --- previews ----------------------------------------------------------------------------------------

export type PreviewStatus = "idle" | "loading" | "playing";

export interface PreviewState {
  voiceId: string | null;
  status: PreviewStatus;
}

/** What the preview uses of its <audio> element. */
export interface PreviewAudio {
  src: string;
  play(): Promise<void>;
  pause(): void;
  load(): void;
  removeAttribute(name: string): void;
}

export interface PreviewDeps {
  /** The HTTP status our server answers for `url` (null: no answer); asked only after a failure, to say why. */
  probe(url: string): Promise<number | null>;
  notice(code: string, message: string): void;
  /** A preview starts: every other playback (a reply, a replay) stops. */
  onStart(): void;
}

const SILENT: PreviewState = { voiceId: null, status: "idle" };

export class VoicePreview {
  private state: PreviewState = SILENT;
  private audio: PreviewAudio | null = null;
  private option: VoiceOption | null = null;
  private listeners = new Set<() => void>();

  constructor(private deps: PreviewDeps) {}

  current(): PreviewState {
    return this.state;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  attach(audio: PreviewAudio | null): void {
    this.audio = audio;
  }

  /** Play `voice`'s sample from our server (inside the click, so the browser allows sound). */
  async play(voice: VoiceOption): Promise<void> {
    const audio = this.audio;
    if (!voice.preview_url || !audio) return;
    this.deps.onStart();
    this.option = voice;
    this.set({ voiceId: voice.voice_id, status: "loading" });
    audio.src = voice.preview_url;
    try {
      await audio.play();
    } catch (error) {
      // Stopped before it could start (AbortError) is no failure; the element's error event may have come first.
      if (this.option === voice && this.state.status !== "idle") await this.failed(voice, error);
    }
  }

  /** The element's `playing` event: sound is coming out. */
  playing(): void {
    if (this.state.status === "loading") this.set({ ...this.state, status: "playing" });
  }

  /** The element's `ended` event. */
  ended(): void {
    this.option = null;
    this.set(SILENT);
  }

  /** The element's `error` event: the sample could not be loaded or decoded. */
  async error(): Promise<void> {
    const voice = this.option;
    if (voice && this.state.status !== "idle") await this.failed(voice, null);
  }

  stop(): void {
    this.option = null;
    if (this.audio && this.state.status !== "idle") {
      this.audio.pause();
      this.audio.removeAttribute("src");
      this.audio.load(); // drops the download too
    }
    this.set(SILENT);
  }

  private async failed(voice: VoiceOption, error: unknown): Promise<void> {
    this.option = null;
    this.set(SILENT);
    if (error instanceof Error && error.name === "NotAllowedError") {
      this.deps.notice("preview_failed", `The browser did not let the preview of ${voice.name} play. Click Preview again.`);
      return;
    }
    const status = voice.preview_url ? await this.deps.probe(voice.preview_url) : null;
    this.deps.notice("preview_failed", previewSentence(voice.name, status));
  }

  private set(state: PreviewState): void {
    this.state = state;
    this.listeners.forEach((listener) => listener());
  }
}

/** Why a preview did not play, from our server's answer for it. */
export function previewSentence(name: string, status: number | null): string {
  if (status === 404) return `There is no preview of ${name} to play.`;
  if (status === 502) return `The preview of ${name} could not be fetched from the voice service. Try again in a moment.`;
  if (status === 403) return `You were signed out, so the preview of ${name} did not load. Reload the page and sign in.`;
  if (status === null) return `The preview of ${name} did not load. Check your connection and try again.`;
  if (status >= 200 && status < 300) return `This browser could not play the preview of ${name}.`;
  return `The preview of ${name} failed (HTTP ${status}). Try again in a moment.`;
}

/** Our server's status for a preview, without keeping its body. */
export async function probePreview(url: string): Promise<number | null> {
  try {
    const response = await fetch(url, { credentials: "same-origin" });
    void response.body?.cancel();
    return response.status;
  } catch {
    return null;
  }
}
