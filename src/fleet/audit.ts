/**
 * The fleet's audit log: every entry goes to this host's audit file (synced,
 * as on one host) and to a capped Redis stream that every node shares, with
 * the node's name. The file comes first: an entry is never lost because
 * Redis is away; a stream append that fails is logged.
 */
import type { Logger } from 'pino';
import type { AuditEntry, AuditSink } from '../state/audit-log.js';
import type { RedisClient } from '../store/redis-client.js';

/** Entries kept in the stream (approximately: XADD MAXLEN ~). */
const STREAM_MAX = 100_000;

export class FleetAudit implements AuditSink {
  readonly stream: string;
  private readonly local: AuditSink;
  private readonly client: RedisClient;
  private readonly node: string;
  private readonly log: Logger;

  constructor(local: AuditSink, client: RedisClient, prefix: string, node: string, log: Logger) {
    this.local = local;
    this.client = client;
    this.stream = `${prefix}audit`;
    this.node = node;
    this.log = log;
  }

  async append(entry: AuditEntry, now: number): Promise<void> {
    await this.local.append(entry, now);
    const line = JSON.stringify({ at: new Date(now).toISOString(), node: this.node, ...entry });
    await this.client.xadd(this.stream, 'MAXLEN', '~', STREAM_MAX, '*', 'entry', line).catch((err: unknown) => {
      this.log.warn({ err: (err as Error).message, action: entry.action }, 'fleet audit: not written to Redis (kept in the local audit log)');
    });
  }

  /** The fleet's newest `count` entries, newest first; this host's own while Redis is away. */
  async recent(count: number): Promise<unknown[]> {
    let rows: Array<[string, string[]]>;
    try {
      rows = await this.client.xrevrange(this.stream, '+', '-', 'COUNT', count);
    } catch {
      return this.local.recent(count);
    }
    const out: unknown[] = [];
    for (const [, fields] of rows) {
      try {
        out.push(JSON.parse(fields[1] ?? '') as unknown);
      } catch {
        // not ours: skipped
      }
    }
    return out;
  }

  close(): Promise<void> {
    return this.local.close();
  }
}
