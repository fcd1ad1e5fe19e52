// The audio side of the conversation's current turn: which reply the live audio belongs to, whether it
// may play, and which finished turn still owes the server its playback_report.
import type { Player } from "./player";
import type { ClientFrame } from "./protocol";

type Deliver = (frame: ClientFrame) => void;

interface PendingReport {
  messageId: string;
  serial: number;
  deliver: Deliver;
}

export class TurnAudio {
  private accepting = false;
  private serial = 0;
  private reportFor: string | null = null;
  private pushed = false;
  private pendingReports = new Set<PendingReport>();
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
    this.player.flush();
    this.serial = this.player.startTurn({ measure: true });
    this.accepting = false;
    this.messageId = null;
    this.reportFor = null;
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
    this.reportFor = this.accepting ? messageId : null;
  }

  /** Audio that answers no Send (a greeting, an on-demand Play): played when `accept`, never reported. */
  beginUnmeasured(messageId: string, accept: boolean): void {
    if (accept) {
      this.player.flush();
      this.serial = this.player.startTurn({ label: messageId });
    }
    this.accepting = accept && this.supported;
    this.messageId = messageId;
    this.reportFor = null;
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
    this.accepting = false;
    this.player.flush();
  }

  /**
   * `messageId` has no more audio: the queue plays out, then its playback_report goes to `deliver`.
   * Returns whether any of its audio was played.
   */
  completed(messageId: string, deliver: Deliver): boolean {
    if (messageId !== this.messageId) return false;
    const played = this.pushed;
    if (this.accepting) this.player.end();
    this.accepting = false;
    if (this.reportFor === messageId) {
      this.reportFor = null;
      const report = { messageId, serial: this.serial, deliver };
      this.pendingReports.add(report);
      void this.player.whenIdle().then(() => this.sendReport(report));
    }
    return played;
  }

  /** Silence the live audio (Stop, auto-play switched off); the rest of this turn's audio is dropped. */
  stop(): void {
    this.accepting = false;
    this.player.flush();
  }

  /** A replay takes the player: the live reply's remaining audio is dropped and will not be reported. */
  yieldToReplay(): void {
    this.accepting = false;
    this.reportFor = null;
    this.messageId = null;
  }

  /** Send every report still waiting for its audio to play out (the user moves to another conversation). */
  flushReports(): void {
    this.pendingReports.forEach((report) => this.sendReport(report));
  }

  /** A live turn's audio is being accepted (for the indicator: voice is on its way). */
  get live(): boolean {
    return this.accepting;
  }

  private sendReport(report: PendingReport): void {
    if (!this.pendingReports.delete(report)) return; // sent already
    const heard = this.player.turnSummary(report.serial);
    report.deliver({ type: "playback_report", message_id: report.messageId, first_audible_ms: heard.firstAudibleMs, underruns: heard.underruns });
  }
}
