/**
 * The audit log: one JSON line per run-time change — when, what, by whom
 * (the caller's address), and the reason given — appended and synced to
 * disk before the change is reported done. Appends are serialized, so lines
 * never interleave.
 */
import { open, type FileHandle } from 'node:fs/promises';

export interface AuditEntry {
  /** e.g. "ban.add", "ban.remove", "kick", "country.set" */
  readonly action: string;
  readonly target: string;
  /** The caller: an address, or "cli"/"internal". */
  readonly by: string;
  readonly reason: string | null;
  readonly details?: Record<string, unknown>;
}

/** Where audit entries go: this file, and in a fleet Redis as well (../fleet/audit.ts). */
export interface AuditSink {
  append(entry: AuditEntry, now: number): Promise<void>;
  close(): Promise<void>;
}

export class AuditLog implements AuditSink {
  private readonly fh: FileHandle;
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(fh: FileHandle) {
    this.fh = fh;
  }

  static async open(path: string): Promise<AuditLog> {
    return new AuditLog(await open(path, 'a', 0o600));
  }

  /** Appends one line stamped with `now` (epoch ms) and syncs it. */
  append(entry: AuditEntry, now: number): Promise<void> {
    const line = `${JSON.stringify({ at: new Date(now).toISOString(), ...entry })}\n`;
    const run = this.tail.then(async () => {
      await this.fh.appendFile(line);
      await this.fh.datasync();
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    await this.tail;
    await this.fh.close();
  }
}
