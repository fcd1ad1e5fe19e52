// The voice of the conversation on screen: a labelled select of the voices its agent offers (shown only
// when there is more than one) and a Preview button that plays the chosen voice's sample from our server.
import { useSyncExternalStore } from "react";
import { offersChoice, voiceLabel, type VoicePicker as Picker, type VoicePreview } from "./voices";

export function VoicePicker({ picker, preview }: { picker: Picker; preview: VoicePreview }) {
  const { choices, selected, saving } = useSyncExternalStore(
    (listener) => picker.subscribe(listener),
    () => picker.current(),
  );
  const sample = useSyncExternalStore(
    (listener) => preview.subscribe(listener),
    () => preview.current(),
  );
  if (!offersChoice(choices)) return null;
  const voice = choices.find((c) => c.voice_id === selected);
  const active = sample.status !== "idle" && sample.voiceId === selected;
  const name = voice?.name ?? "this voice";
  const button = !active ? `Preview ${name}` : sample.status === "loading" ? `Loading the preview of ${name}; press to cancel` : `Stop the preview of ${name}`;
  return (
    <span className="voice-picker">
      <label title="The voice replies in this conversation are spoken with; a change applies from the next reply.">
        Voice
        {/* Not `disabled` while a pick is saved: that would drop the keyboard focus; choose() waits instead. */}
        <select value={selected} aria-disabled={saving || undefined} aria-busy={saving || undefined} onChange={(e) => void picker.choose(e.target.value)}>
          {choices.map((c) => (
            <option key={c.voice_id} value={c.voice_id} title={c.description || undefined}>
              {voiceLabel(c)}
            </option>
          ))}
          {!voice && selected && (
            <option value={selected} disabled>
              {selected} (no longer offered)
            </option>
          )}
        </select>
      </label>
      <button
        type="button"
        className="voice-preview"
        aria-label={button}
        title={voice?.preview_url ? button : "This voice has no preview."}
        disabled={!voice?.preview_url}
        aria-busy={(active && sample.status === "loading") || undefined}
        data-state={active ? sample.status : "idle"}
        onClick={() => (active ? preview.stop() : voice && void preview.play(voice))}
      >
        <span aria-hidden="true">{!active ? "▶ Preview" : sample.status === "loading" ? "… Loading" : "■ Stop preview"}</span>
      </button>
      <audio
        className="voice-preview-audio"
        preload="none"
        ref={(element) => preview.attach(element)}
        onPlaying={() => preview.playing()}
        onEnded={() => preview.ended()}
        onError={() => void preview.error()}
      />
    </span>
  );
}
