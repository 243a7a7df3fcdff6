/**
 * The signals log: one line per client Doorman refused and per failed login
 * it was told of, in a fixed format that CrowdSec reads with the parser and
 * scenarios in contrib/crowdsec/ (CrowdSec's own way in: a log file, a
 * parser, a scenario; no machine credentials, and CrowdSec's decisions come
 * back through the bouncer).
 *
 *   2026-12-07T00:11:08.123Z doorman[4242]: refused client=192.0.2.7 service=imap front=proxy rule=limits.connection_rate
 *   2026-12-07T00:11:08.123Z doorman[4242]: auth-failed client=192.0.2.7 service=imap front=dovecot rule=-
 *
 * Fields are single words of printable ASCII (anything else becomes "?",
 * each capped at WORD_MAX). Not written: refusals because of a ban (a
 * banned client knocking again is no new evidence, and a CrowdSec ban fed
 * back would renew itself for ever), refusals because the store failed (no
 * fault of the client's), and anything from an exception network.
 *
 * Writes are buffered and never wait: past MAX_BUFFERED bytes not yet on
 * disk (a full or slow disk, a flood) lines are dropped and counted. The
 * file is opened again when it is renamed or deleted (logrotate without
 * copytruncate), checked every REOPEN_CHECK_MS.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import type { AuthFailureEvent, DoorEventBus, RefusalEvent } from '../core/events.js';
import type { Gatekeeper } from '../core/gate.js';
import { parseIp } from '../core/ip.js';

/** Bytes waiting for the disk past which lines are dropped: some ten thousand lines. */
const MAX_BUFFERED = 1024 * 1024;
/** How often the path is compared with the file open (rotation). */
const REOPEN_CHECK_MS = 10_000;
/** A field's characters at most: service names, rule keys and addresses are far shorter. */
const WORD_MAX = 64;
/** Refusal rules that are not the client's doing or not new evidence. */
const NOT_SIGNALLED = new Set(['bans', 'store']);

/** One field as one word. */
export function word(v: string): string {
  const s = v.length > WORD_MAX ? v.slice(0, WORD_MAX) : v;
  return s === '' ? '-' : s.replace(/[^\x21-\x7e]/g, '?');
}

/** A signal line, newline included. */
export function signalLine(at: number, pid: number, event: 'refused' | 'auth-failed', e: { address: string; service: string; by: string; rule?: string }): string {
  return `${new Date(at).toISOString()} doorman[${pid}]: ${event} client=${word(e.address)} service=${word(e.service)} front=${word(e.by)} rule=${word(e.rule ?? '')}\n`;
}

export class SignalsLog {
  readonly path: string;
  private readonly bus: DoorEventBus;
  private readonly gate: Gatekeeper;
  private readonly clock: Clock;
  private readonly log: Logger;
  private out: WriteStream;
  private ino = 0;
  private timer: NodeJS.Timeout | null = null;
  private failing = false;
  /** Lines written and dropped since start. */
  written = 0;
  dropped = 0;
  private readonly onRefusal = (e: RefusalEvent) => {
    if (!NOT_SIGNALLED.has(e.rule)) this.write('refused', e);
  };
  private readonly onAuthFailure = (e: AuthFailureEvent) => this.write('auth-failed', e);

  private constructor(path: string, bus: DoorEventBus, gate: Gatekeeper, clock: Clock, log: Logger) {
    this.path = path;
    this.bus = bus;
    this.gate = gate;
    this.clock = clock;
    this.log = log;
    this.out = this.openStream();
  }

  /** Opens (creates, 0640) the file and starts listening; rejects when the file cannot be opened. */
  static async open(path: string, bus: DoorEventBus, gate: Gatekeeper, clock: Clock, log: Logger): Promise<SignalsLog> {
    const s = new SignalsLog(path, bus, gate, clock, log);
    await new Promise<void>((resolve, reject) => {
      s.out.once('open', () => resolve());
      s.out.once('error', reject);
    });
    s.ino = (await stat(path)).ino;
    bus.on('refusal', s.onRefusal);
    bus.on('authFailure', s.onAuthFailure);
    s.timer = setInterval(() => void s.checkRotation(), REOPEN_CHECK_MS);
    s.timer.unref();
    return s;
  }

  async close(): Promise<void> {
    this.bus.off('refusal', this.onRefusal);
    this.bus.off('authFailure', this.onAuthFailure);
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await new Promise<void>((resolve) => this.out.end(() => resolve()));
  }

  private openStream(): WriteStream {
    const out = createWriteStream(this.path, { flags: 'a', mode: 0o640 });
    out.on('error', (err) => {
      if (!this.failing) this.log.error({ file: this.path, err: err.message }, 'crowdsec: the signals log cannot be written; lines are dropped until it can');
      this.failing = true;
    });
    return out;
  }

  private write(event: 'refused' | 'auth-failed', e: { address: string; service: string; by: string; rule?: string }): void {
    const ip = parseIp(e.address);
    if (ip !== null && this.gate.rules.exceptions.match(ip) !== null) return;
    if (this.failing || this.out.writableLength > MAX_BUFFERED) {
      this.dropped++;
      return;
    }
    this.out.write(signalLine(this.clock.now(), process.pid, event, e));
    this.written++;
  }

  /** Opens the path again when the file there is no longer the one written to. */
  private async checkRotation(): Promise<void> {
    let ino: number;
    try {
      ino = (await stat(this.path)).ino;
    } catch {
      ino = -1; // gone: reopening creates it
    }
    if (ino === this.ino && !this.failing) return;
    const old = this.out;
    this.failing = false;
    this.out = this.openStream();
    old.end();
    this.out.once('open', () => {
      void stat(this.path).then((s) => (this.ino = s.ino), () => undefined);
    });
  }
}
