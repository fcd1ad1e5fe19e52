// The audio side of the conversation's current turn: which reply the live audio belongs to, whether it
// may play, and what each reply that was played owes the server in its playback_report (first sound,
// underruns, and how far the listener got when it was cut short).
import type { Player } from "./player";
import type { ClientFrame } from "./protocol";

type Deliver = (frame: ClientFrame) => void;

interface Report {
  messageId: string;
  serial: number;
  /** Where the listener was in the reply's audio when it was stopped; null while it plays on. */
  heardMs: number | null;
  deliver: Deliver | null;
}

/** Replies whose report is kept until their completion arrives; older ones are dropped. */
const KEPT_REPORTS = 8;

export class TurnAudio {
  private accepting = false;
  private serial = 0;
  private pushed = false;
  private current: Report | null = null; // the report of the reply whose audio plays now
  private reports = new Map<string, Report>();
  /** The reply (or greeting, or on-demand Play) whose live audio plays now. */
  messageId: string | null = null;
  /** The live audio format can be played by this browser client. */
  supported = true;

  constructor(private player: Player) {}

  /**
   * The user pressed Send. Call before anything else in the gesture (unlock, the socket): the first
   * sound is measured from here, and a reply still speaking is silenced now. Its late audio, and any
   * audio before the server confirms the new message, is dropped.
   */
  begin(): void {
    this.cut();
    this.player.flush();
    this.serial = this.player.startTurn({ measure: true });
    this.accepting = false;
    this.messageId = null;
    this.pushed = false;
  }

  /** The server saved the message sent by begin(): the reply's audio plays if `speak`. */
  confirmed(speak: boolean): void {
    this.accepting = speak && this.supported;
  }

  /** The confirmed turn's reply has its id now. */
  reply(messageId: string): void {
    this.messageId = messageId;
    this.player.label(this.serial, messageId);
    if (!this.accepting) return;
    this.current = { messageId, serial: this.serial, heardMs: null, deliver: null };
    this.reports.set(messageId, this.current);
    if (this.reports.size > KEPT_REPORTS) this.reports.delete(this.reports.keys().next().value as string);
  }

  /** Audio that answers no Send (a greeting, an on-demand Play): played when `accept`, never reported. */
  beginUnmeasured(messageId: string, accept: boolean): void {
    this.cut();
    if (accept) {
      this.player.flush();
      this.serial = this.player.startTurn({ label: messageId });
    }
    this.accepting = accept && this.supported;
    this.messageId = messageId;
    this.pushed = false;
  }

  pushBase64(base64: string): void {
    if (!this.accepting) return;
    this.pushed = true;
    this.player.pushBase64(base64);
  }

  pushBytes(pcm: Uint8Array): void {
    if (!this.accepting) return;
    this.pushed = true;
    this.player.pushBytes(pcm);
  }

  /** The server stopped `messageId`: what is queued of it goes silent, late audio is dropped. */
  interrupted(messageId: string): void {
    if (messageId !== this.messageId || !this.accepting) return; // not playing (or stopped already)
    this.cut();
    this.accepting = false;
    this.player.flush();
  }

  /**
   * `messageId` has no more audio: the queue plays out, then its playback_report goes to `deliver` (at
   * once when it was cut short). Returns whether any of its audio was played.
   */
  completed(messageId: string, deliver: Deliver): boolean {
    const played = messageId === this.messageId && this.pushed;
    if (messageId === this.messageId) {
      if (this.accepting) this.player.end();
      this.accepting = false;
    }
    const report = this.reports.get(messageId);
    if (report) {
      report.deliver = deliver;
      if (report.heardMs !== null || report !== this.current) this.send(report);
      else void this.player.whenIdle().then(() => this.send(report));
    }
    return played;
  }

  /** Silence the live audio (Stop, auto-play switched off); the rest of this turn's audio is dropped. */
  stop(): void {
    if (this.accepting) this.cut();
    this.accepting = false;
    this.player.flush();
  }

  /** A replay takes the player: the live reply's remaining audio is dropped. */
  yieldToReplay(): void {
    if (this.accepting) this.cut();
    this.accepting = false;
    this.messageId = null;
  }

  /** Send every report that is due (the user moves to another conversation: its socket closes). */
  flushReports(): void {
    this.reports.forEach((report) => {
      if (report.deliver) this.send(report);
    });
  }

  /** A live turn's audio is being accepted (for the indicator: voice is on its way). */
  get live(): boolean {
    return this.accepting;
  }

  /** The playing reply stops here: remember how far the listener got. Call before flushing. */
  private cut(): void {
    const report = this.current;
    this.current = null;
    if (!report || report.heardMs !== null) return;
    report.heardMs = Math.round(this.player.positionMs(report.serial) ?? 0);
  }

  private send(report: Report): void {
    if (!report.deliver || this.reports.get(report.messageId) !== report) return; // sent already
    this.reports.delete(report.messageId);
    const heard = this.player.turnSummary(report.serial);
    report.deliver({
      type: "playback_report",
      message_id: report.messageId,
      first_audible_ms: heard.firstAudibleMs,
      underruns: heard.underruns,
      ...(report.heardMs !== null && { heard_ms: report.heardMs }),
    });
  }
}
