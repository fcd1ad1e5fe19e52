import { ApiError } from "./api";
import { offersChoice, previewSentence, shownVoice, voiceLabel, VoicePicker, VoicePreview, type PreviewAudio, type VoiceOption, type VoiceRoute } from "./voices";

const voice = (voice_id: string, name: string, extra: Partial<VoiceOption> = {}): VoiceOption => ({
  voice_id,
  name,
  category: "premade",
  description: "",
  language: "en",
  is_default: false,
  preview_url: `/api/agents/a1/voices/${voice_id}/preview/`,
  ...extra,
});

const GEORGE = voice("george", "George", { is_default: true });
const RACHEL = voice("rachel", "Rachel");
const SARAH = voice("sarah", "Sarah", { category: "", language: "", preview_url: null });

/** A promise the test settles by hand. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((yes, no) => ((resolve = yes), (reject = no)));
  return { promise, resolve, reject };
}

function pickerHarness({ stored = "", route = { via: "patch", conversationId: "c1" } as VoiceRoute } = {}) {
  const notices: string[] = [];
  const saved: [string, string][] = [];
  const api = {
    conversation: vi.fn(async (id: string) => ({ agent: id === "c-other" ? "a2" : "a1", voice_id: stored })),
    voices: vi.fn(async (_agentId?: string) => [GEORGE, RACHEL, SARAH]),
    setVoice: vi.fn(async (id: string, voiceId: string) => {
      saved.push([id, voiceId]);
      return { voice_id: voiceId };
    }),
  };
  const routes = vi.fn((_voiceId: string): VoiceRoute => route);
  const picker = new VoicePicker({ api, route: routes, notice: (_code, message) => notices.push(message) });
  return { picker, api, routes, notices, saved };
}

describe("the voice picker", () => {
  it("labels each voice with its category and language and marks the agent's own", () => {
    expect(voiceLabel(GEORGE)).toBe("George (agent's voice) · premade · en");
    expect(voiceLabel(SARAH)).toBe("Sarah");
  });

  it("is shown only when the agent offers more than one voice", () => {
    expect(offersChoice([GEORGE])).toBe(false);
    expect(offersChoice([GEORGE, RACHEL])).toBe(true);
  });

  it("shows the agent's own voice for a conversation that picked none", () => {
    expect(shownVoice([GEORGE, RACHEL], "")).toBe("george");
    expect(shownVoice([GEORGE, RACHEL], "rachel")).toBe("rachel");
  });

  it("shows a stored conversation's voice, and the agent's voices for a new one", async () => {
    const h = pickerHarness({ stored: "rachel" });
    await h.picker.show("c1", null);
    expect(h.picker.current()).toEqual({ choices: [GEORGE, RACHEL, SARAH], selected: "rachel", saving: false });
    await h.picker.show(null, "a1");
    expect(h.picker.current().selected).toBe("george");
    expect(h.api.voices).toHaveBeenCalledTimes(1); // one list per agent for the page's lifetime
  });

  it("drops the answer for a conversation that is no longer on screen", async () => {
    const h = pickerHarness({ stored: "rachel" });
    const slow = deferred<VoiceOption[]>();
    h.api.voices.mockImplementation((agentId?: string) => (agentId === "a2" ? slow.promise : Promise.resolve([GEORGE, RACHEL, SARAH])));
    const first = h.picker.show("c-other", null);
    await h.picker.show(null, "a1");
    slow.resolve([voice("other", "Other")]);
    await first;
    expect(h.picker.current().choices).toEqual([GEORGE, RACHEL, SARAH]);
  });

  it("PATCHes a stored conversation, waiting in the select, and sends blank for the agent's own voice", async () => {
    const h = pickerHarness({ stored: "rachel" });
    await h.picker.show("c1", null);
    const saving = h.picker.choose("sarah");
    expect(h.picker.current()).toMatchObject({ selected: "sarah", saving: true });
    await saving;
    expect(h.picker.current()).toMatchObject({ selected: "sarah", saving: false });
    await h.picker.choose("george");
    expect(h.saved).toEqual([
      ["c1", "sarah"],
      ["c1", ""],
    ]);
    expect(h.picker.current().selected).toBe("george");
  });

  it("keeps the previous voice and says why when the server refuses a pick", async () => {
    const h = pickerHarness({ stored: "rachel" });
    await h.picker.show("c1", null);
    h.api.setVoice.mockRejectedValueOnce(new ApiError(400, JSON.stringify({ voice_id: ["This agent does not offer that voice."] })));
    await h.picker.choose("sarah");
    expect(h.picker.current()).toMatchObject({ selected: "rachel", saving: false });
    expect(h.notices).toEqual(["Could not switch to Sarah: This agent does not offer that voice. Replies keep speaking as Rachel."]);

    h.api.setVoice.mockRejectedValueOnce(new TypeError("Failed to fetch"));
    await h.picker.choose("sarah");
    expect(h.picker.current().selected).toBe("rachel");
    expect(h.notices[1]).toBe("Could not switch to Sarah (TypeError: Failed to fetch). Replies keep speaking as Rachel. Try again in a moment.");
  });

  it("hands a new conversation's pick to the socket, and a refusal of it back to the agent's voice", async () => {
    const h = pickerHarness({ route: { via: "socket" } });
    await h.picker.show(null, "a1");
    await h.picker.choose("rachel");
    expect(h.routes).toHaveBeenCalledWith("rachel");
    expect(h.api.setVoice).not.toHaveBeenCalled();
    expect(h.picker.current().selected).toBe("rachel");
    h.picker.refused();
    expect(h.picker.current().selected).toBe("george");
    expect(h.notices).toEqual(["The server refused the voice Rachel for this conversation, so replies speak as George."]);
  });

  it("stores a pick made while the conversation was being created once it exists", async () => {
    const h = pickerHarness({ route: { via: "later" } });
    await h.picker.show(null, "a1");
    await h.picker.choose("rachel");
    expect(h.api.setVoice).not.toHaveBeenCalled();
    await h.picker.created("c-new", "rachel");
    expect(h.saved).toEqual([["c-new", "rachel"]]);
  });

  it("ignores a voice that is not offered and one already chosen", async () => {
    const h = pickerHarness();
    await h.picker.show("c1", null);
    await h.picker.choose("nobody");
    await h.picker.choose("george");
    expect(h.routes).not.toHaveBeenCalled();
  });

  it("says so when the voices cannot be loaded, but not for a conversation that is gone", async () => {
    const h = pickerHarness();
    h.api.voices.mockRejectedValueOnce(new ApiError(500, "oops"));
    await h.picker.show(null, "a1");
    expect(h.notices).toHaveLength(1);
    h.api.conversation.mockRejectedValueOnce(new ApiError(404, "{}"));
    await h.picker.show("gone", null);
    expect(h.notices).toHaveLength(1);
    await h.picker.show(null, "a1"); // a failed list is asked for again
    expect(h.picker.current().choices).toHaveLength(3);
  });
});

class FakeAudio implements PreviewAudio {
  src = "";
  paused = true;
  started = deferred<void>();
  play = vi.fn(() => {
    this.paused = false;
    return this.started.promise;
  });
  pause = vi.fn(() => {
    this.paused = true;
  });
  load = vi.fn();
  removeAttribute = vi.fn((name: string) => {
    if (name === "src") this.src = "";
  });
}

function previewHarness(status: number | null = 200) {
  const audio = new FakeAudio();
  const notices: string[] = [];
  const onStart = vi.fn();
  const probe = vi.fn(async () => status);
  const preview = new VoicePreview({ probe, notice: (_code, message) => notices.push(message), onStart });
  preview.attach(audio);
  return { audio, preview, notices, onStart, probe };
}

describe("the voice preview", () => {
  it("stops other playback, loads the sample from our server, then says it plays until it ends", async () => {
    const h = previewHarness();
    const playing = h.preview.play(RACHEL);
    expect(h.onStart).toHaveBeenCalledOnce();
    expect(h.audio.src).toBe("/api/agents/a1/voices/rachel/preview/");
    expect(h.preview.current()).toEqual({ voiceId: "rachel", status: "loading" });
    h.audio.started.resolve();
    await playing;
    h.preview.playing();
    expect(h.preview.current()).toEqual({ voiceId: "rachel", status: "playing" });
    h.preview.ended();
    expect(h.preview.current().status).toBe("idle");
    expect(h.probe).not.toHaveBeenCalled();
  });

  it("stops at once and drops the download", async () => {
    const h = previewHarness();
    const playing = h.preview.play(RACHEL);
    h.preview.stop();
    h.audio.started.reject(new DOMException("interrupted by pause", "AbortError"));
    await playing;
    expect(h.audio.pause).toHaveBeenCalled();
    expect(h.audio.src).toBe("");
    expect(h.preview.current().status).toBe("idle");
    expect(h.notices).toEqual([]); // a stop is no failure
  });

  it.each([
    [404, "There is no preview of Rachel to play."],
    [502, "The preview of Rachel could not be fetched from the voice service. Try again in a moment."],
    [null, "The preview of Rachel did not load. Check your connection and try again."],
  ])("says why the sample did not play (HTTP %s), once", async (status, sentence) => {
    const h = previewHarness(status);
    const playing = h.preview.play(RACHEL);
    await h.preview.error(); // the element's error event, then play() rejects as well
    h.audio.started.reject(new DOMException("no supported sources", "NotSupportedError"));
    await playing;
    expect(h.notices).toEqual([sentence]);
    expect(h.probe).toHaveBeenCalledWith("/api/agents/a1/voices/rachel/preview/");
    expect(h.preview.current().status).toBe("idle");
  });

  it("plays nothing for a voice without a preview", async () => {
    const h = previewHarness();
    await h.preview.play(SARAH);
    expect(h.audio.play).not.toHaveBeenCalled();
    expect(h.onStart).not.toHaveBeenCalled();
  });

  it("words every other answer", () => {
    expect(previewSentence("Rachel", 200)).toBe("This browser could not play the preview of Rachel.");
    expect(previewSentence("Rachel", 403)).toContain("signed out");
    expect(previewSentence("Rachel", 500)).toBe("The preview of Rachel failed (HTTP 500). Try again in a moment.");
  });
});
