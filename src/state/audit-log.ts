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
  /** The newest `count` entries, newest first (as written: with `at`, and `node` in a fleet). */
  recent(count: number): Promise<unknown[]>;
  close(): Promise<void>;
}

/** How much of the file's end recent() reads: far more than the largest page of entries. */
const TAIL_BYTES = 512 * 1024;

export class AuditLog implements AuditSink {
  private readonly fh: FileHandle;
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(fh: FileHandle) {
    this.fh = fh;
  }

  static async open(path: string): Promise<AuditLog> {
    // a+: appends always go to the end; recent() reads the tail.
    return new AuditLog(await open(path, 'a+', 0o600));
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

  /** Reads the end of the file, after every append queued so far. */
  async recent(count: number): Promise<unknown[]> {
    await this.tail;
    const { size } = await this.fh.stat();
    const start = Math.max(0, size - TAIL_BYTES);
    const buf = Buffer.alloc(size - start);
    await this.fh.read(buf, 0, buf.length, start);
    const lines = buf.toString('utf8').split('\n');
    if (start > 0) lines.shift(); // the first line may be cut
    const out: unknown[] = [];
    for (let i = lines.length - 1; i >= 0 && out.length < count; i--) {
      const line = lines[i] as string;
      if (line === '') continue;
      try {
        out.push(JSON.parse(line));
      } catch {
        // a line cut by a crash mid-append: skipped
      }
    }
    return out;
  }

  async close(): Promise<void> {
    await this.tail;
    await this.fh.close();
  }
}
