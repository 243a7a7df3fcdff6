/**
 * A single host's copy of CrowdSec's ban list, beside the state file, so
 * that a Doorman restarted while the Local API is down still refuses what
 * CrowdSec had decided (a fleet keeps its copy in Redis, ./fleet.ts). The
 * polling loop saves the list whenever it changed; the file is read once,
 * at start, before the first poll, whose answer then replaces it. A file
 * that is missing, unreadable or not a list is logged and ignored: CrowdSec
 * is asked again anyway.
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { z } from 'zod';
import { isNetworkText } from '../core/networks.js';
import { writeFileAtomic } from '../state/atomic-file.js';
import type { SnapshotBan } from './decision-set.js';

/** The largest cache read back: CrowdSec's biggest lists are a few MB. */
const MAX_BYTES = 256 * 1024 * 1024;

const cacheSchema = z.strictObject({
  version: z.literal(1),
  bans: z.array(z.strictObject({ t: z.string().min(1).max(64), u: z.number().int().min(0), r: z.string().max(512) })),
});

export class CrowdsecCache {
  constructor(
    readonly path: string,
    private readonly log: Logger,
  ) {}

  /** The bans saved last, those not yet ended; null when there is no usable file. */
  async load(now: number): Promise<SnapshotBan[] | null> {
    let text: string;
    try {
      const buf = await readFile(this.path);
      if (buf.length > MAX_BYTES) throw new Error(`${buf.length} bytes, more than ${MAX_BYTES}`);
      text = buf.toString('utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ file: this.path, err: (err as Error).message }, 'crowdsec: the saved ban list could not be read; waiting for the Local API');
      return null;
    }
    const parsed = cacheSchema.safeParse(safeJson(text));
    if (!parsed.success) {
      this.log.warn({ file: this.path }, 'crowdsec: the saved ban list is not one; waiting for the Local API');
      return null;
    }
    return parsed.data.bans.filter((b) => b.u > now && isNetworkText(b.t));
  }

  /** Replaces the file with `list` (atomically: a crash leaves the old one or the new one). */
  save(list: readonly SnapshotBan[]): Promise<void> {
    return writeFileAtomic(this.path, JSON.stringify({ version: 1, bans: list }));
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
