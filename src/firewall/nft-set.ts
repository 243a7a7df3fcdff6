/**
 * The nftables set writer (issue 20, "Firewall sets"): every ban in
 * gate.bans, both layers, copied into an IPv4 and an IPv6 set that the
 * admin's own ruleset drops, so a banned address costs the mail host
 * nothing. Doorman writes only the elements of the sets it is told
 * (`firewall.nft`), never a rule.
 *
 * Driven by the ban list's change events, which it only records (./set-plan.ts)
 * and never waits on: a decision never waits for nft. Changes are coalesced
 * for `batch_delay` and each batch is one `nft -f -` run, one transaction
 * (./nft-run.ts says why not `nft -i`; a batch removing an element that may
 * be timing out has a second run before it, ./set-plan.ts says why); changes that arrive while nft runs
 * make the next batch. At start, after a `clear` (a fleet reloading its list,
 * CrowdSec's startup stream) and after a failure the sets are resynced:
 * flushed and filled with every ban in force, in one transaction. A failed
 * run is logged (DOORMAN_ERR_FIREWALL_SYNC), counted, shown in /api/status
 * and retried by a resync after a backoff that doubles from 1 s to 60 s:
 * never a crash, never a busy loop.
 *
 * Elements carry the ban's remaining time as their timeout, so the kernel
 * expires them; at close they are left in place and keep the bans in force
 * until they run out (a restart resyncs).
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import type { BanList } from '../core/bans.js';
import type { Clock } from '../core/clock.js';
import type { Network } from '../core/networks.js';
import { FirewallError } from '../errors.js';
import { holdsNetAdmin, nftRunner, type NftRunner } from './nft-run.js';
import { SetPlan, type SetNames } from './set-plan.js';

/** The first retry after a failure; each next one waits twice as long, up to RETRY_MAX_MS. */
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 60_000;

export interface NftSetOptions {
  readonly names: SetNames;
  /** argv that runs nft: ["nft"], or with a prefix (["ip", "netns", "exec", "NS", "nft"]). */
  readonly command: readonly string[];
  /** How long changes are gathered before a batch runs. */
  readonly batchDelayMs: number;
  /** The deadline of one nft run. */
  readonly timeoutMs: number;
  /** The configuration file, for start-up errors. */
  readonly source: string;
}

/** Timers, replaceable in tests. */
export interface Timers {
  set(f: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const realTimers: Timers = {
  set: (f, ms) => setTimeout(f, ms).unref(),
  clear: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** The writer's state for /api/status and the metrics. */
export interface FirewallStatus {
  readonly type: 'nft';
  readonly table: string;
  readonly sets: { readonly v4: string | null; readonly v6: string | null };
  /** in_sync: the last run went in and nothing waits; pending: changes wait for a run; failing: retrying after a failure. */
  readonly state: 'in_sync' | 'pending' | 'failing';
  /** Elements last written (some may have timed out since). */
  readonly elements: number;
  readonly syncs: { readonly ok: number; readonly error: number };
  readonly resyncs: number;
  readonly last_ok: string | null;
  readonly last_error: { readonly at: string; readonly message: string } | null;
  readonly next_retry: string | null;
}

interface Deps {
  readonly bans: BanList;
  /** The exception networks in force; a reload may change them (then call resync()). */
  readonly exceptions: () => Iterable<Network>;
  readonly clock: Clock;
  readonly log: Logger;
  readonly run?: NftRunner;
  readonly timers?: Timers;
  /** Whether the process holds CAP_NET_ADMIN (default: read from /proc), to word a refusal by the kernel. */
  readonly netAdmin?: () => boolean | null;
}

export class NftSetWriter {
  private readonly plan: SetPlan;
  private readonly run: NftRunner;
  private readonly timers: Timers;
  private readonly unsubscribe: () => void;
  private batchTimer: unknown = null;
  private retryTimer: unknown = null;
  private retryAt: number | null = null;
  private running: Promise<void> | null = null;
  private closed = false;
  private failures = 0;
  private ok = 0;
  private errors = 0;
  private resyncs = 0;
  private lastOk: number | null = null;
  private lastError: { at: number; message: string } | null = null;
  private waiters: Array<() => void> = [];

  private constructor(
    private readonly opts: NftSetOptions,
    private readonly d: Deps,
  ) {
    this.plan = new SetPlan(opts.names, d.exceptions, opts.timeoutMs);
    this.run = d.run ?? nftRunner(opts.command, opts.timeoutMs);
    this.timers = d.timers ?? realTimers;
    this.unsubscribe = d.bans.onChange((c) => {
      this.plan.change(c);
      this.schedule();
    });
  }

  /**
   * Checks that the sets exist with the right type and flags (throws
   * FirewallError naming the key otherwise), then resyncs them once: the
   * writer returned is following the bans, in sync or retrying.
   */
  static async open(opts: NftSetOptions, d: Deps): Promise<NftSetWriter> {
    const run = d.run ?? nftRunner(opts.command, opts.timeoutMs);
    await checkSets(opts, run, d.netAdmin ?? holdsNetAdmin);
    const w = new NftSetWriter(opts, { ...d, run });
    await w.flushNow();
    return w;
  }

  /** Flushes the sets and writes every ban again at the next batch (exceptions reloaded). */
  resync(): void {
    this.plan.wantResync();
    this.schedule();
  }

  /** Resolves when nothing waits to be written and no run is out (or the writer is failing and waits to retry). */
  idle(): Promise<void> {
    if (this.quiet()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  status(): FirewallStatus {
    const n = this.opts.names;
    const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());
    return {
      type: 'nft',
      table: n.table,
      sets: { v4: n.v4, v6: n.v6 },
      state: this.failures > 0 ? 'failing' : this.plan.dirty || this.running !== null ? 'pending' : 'in_sync',
      elements: this.plan.elements,
      syncs: { ok: this.ok, error: this.errors },
      resyncs: this.resyncs,
      last_ok: iso(this.lastOk),
      last_error: this.lastError === null ? null : { at: iso(this.lastError.at) as string, message: this.lastError.message },
      next_retry: iso(this.retryAt),
    };
  }

  /** Stops following the bans and waits for a run that is out; the elements stay until their timeouts. */
  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe();
    for (const t of [this.batchTimer, this.retryTimer]) if (t !== null) this.timers.clear(t);
    this.batchTimer = this.retryTimer = null;
    await this.running;
    this.wake();
  }

  private quiet(): boolean {
    return this.closed || (this.running === null && this.batchTimer === null && (this.retryTimer !== null || !this.plan.dirty));
  }

  private wake(): void {
    if (!this.quiet()) return;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** A batch after batch_delay, unless one is due already, nft is running (it follows), or a retry waits. */
  private schedule(): void {
    if (this.closed || this.batchTimer !== null || this.running !== null || this.retryTimer !== null) return;
    this.batchTimer = this.timers.set(() => {
      this.batchTimer = null;
      void this.flushNow();
    }, this.opts.batchDelayMs);
  }

  /** Runs one batch now, then the next if changes came meanwhile. */
  private flushNow(): Promise<void> {
    if (this.running !== null || this.closed) return this.running ?? Promise.resolve();
    const now = this.d.clock.now();
    const batch = this.plan.next(now, () => this.d.bans.list(now));
    if (batch === null) {
      this.wake();
      return Promise.resolve();
    }
    for (const w of batch.withheld) {
      this.d.log.warn({ target: w.target, layer: w.layer }, `firewall: ${w.target} is not written to the nftables set: ${w.why} (the set writer's own check; Doorman's decisions are unchanged)`);
    }
    if (batch.pre === '' && batch.script === '') {
      // Changes that cancelled out, or only bans withheld: nothing for nft.
      this.plan.settle(true);
      this.wake();
      return Promise.resolve();
    }
    const done = async (): Promise<void> => {
      let failed: Error | null = null;
      try {
        if (batch.pre !== '') await this.run(['-f', '-'], batch.pre);
        if (batch.script !== '') await this.run(['-f', '-'], batch.script);
      } catch (err) {
        failed = err as Error;
      }
      this.plan.settle(failed === null);
      this.running = null;
      if (failed === null) this.succeeded(batch.resync, batch.added, batch.removed);
      else this.failed(failed);
      if (this.plan.dirty) this.schedule();
      this.wake();
    };
    this.running = done();
    return this.running;
  }

  private succeeded(resync: boolean, added: number, removed: number): void {
    this.ok++;
    this.lastOk = this.d.clock.now();
    if (resync) this.resyncs++;
    const fields = { table: this.opts.names.table, resync, added, removed, elements: this.plan.elements };
    if (this.failures > 0) this.d.log.info({ ...fields, failures: this.failures }, 'firewall: nftables sets in sync again');
    else if (resync) this.d.log.info(fields, 'firewall: nftables sets resynced: flushed and filled with every ban in force');
    else this.d.log.debug(fields, 'firewall: nftables sets updated');
    this.failures = 0;
  }

  private failed(err: Error): void {
    this.errors++;
    this.failures++;
    const at = this.d.clock.now();
    this.lastError = { at, message: err.message };
    const wait = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.min(this.failures - 1, 16));
    this.retryAt = at + wait;
    this.d.log.error({ code: 'DOORMAN_ERR_FIREWALL_SYNC', err: err.message, failures: this.failures, retry_in_ms: wait }, `firewall: writing the nftables sets failed; a full resync follows in ${wait / 1000} s (decisions do not wait for it)`);
    if (this.closed) return;
    this.retryTimer = this.timers.set(() => {
      this.retryTimer = null;
      this.retryAt = null;
      void this.flushNow();
    }, wait);
  }
}

/** The set lines an admin adds, for messages and the README. */
export function setDefinition(names: SetNames): string {
  const [family, table] = names.table.split(' ') as [string, string];
  const sets = [names.v4 === null ? null : `set ${names.v4} { type ipv4_addr; flags interval, timeout; }`, names.v6 === null ? null : `set ${names.v6} { type ipv6_addr; flags interval, timeout; }`].filter((s) => s !== null);
  return `table ${family} ${table} { ${sets.join(' ')} … }`;
}

/** Each configured set exists, holds addresses of its family and has flags interval and timeout. */
async function checkSets(opts: NftSetOptions, run: NftRunner, netAdmin: () => boolean | null): Promise<void> {
  const { names, source } = opts;
  const dropIn = 'systemctl edit doorman: CapabilityBoundingSet=CAP_NET_ADMIN and RestrictAddressFamilies=AF_NETLINK; see the README, "Firewall sets"';
  for (const [family, set, key] of [[4, names.v4, 'firewall.nft.set_v4'], [6, names.v6, 'firewall.nft.set_v6']] as const) {
    if (set === null) continue;
    const want = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
    const hint = `create it with: nft add set ${names.table} ${set} '{ type ${want}; flags interval, timeout; }' (and a rule that drops what it holds; see the README, "Firewall sets")`;
    let out: string;
    try {
      out = await run(['-j', '-t', 'list', 'set', ...names.table.split(' '), set], '');
    } catch (err) {
      const what = (err as Error).message;
      if (/^cannot run /.test(what)) throw new FirewallError('DOORMAN_ERR_FIREWALL_SET', `${source}: firewall.nft.command: ${what}; name the nft program (e.g. [/usr/sbin/nft])`);
      // The kernel's refusals say nothing of the set: name what is missing instead.
      if (/Operation not permitted/.test(what) && netAdmin() === false) {
        throw new FirewallError('DOORMAN_ERR_FIREWALL_SET', `${source}: firewall.nft: nft may not read or write the sets: Doorman runs without CAP_NET_ADMIN (${what}); give it the capability (the packaged unit: a drop-in, ${dropIn})`);
      }
      if (/Netlink socket/i.test(what)) {
        throw new FirewallError('DOORMAN_ERR_FIREWALL_SET', `${source}: firewall.nft: nft cannot open a netlink socket (${what}); allow AF_NETLINK (the packaged unit: a drop-in, ${dropIn})`);
      }
      throw new FirewallError('DOORMAN_ERR_FIREWALL_SET', `${source}: ${key}: the set ${names.table} ${set} cannot be read (${what}); ${hint}`);
    }
    const found = parseSetListing(out);
    if (found === null) throw new FirewallError('DOORMAN_ERR_FIREWALL_SET', `${source}: ${key}: nft listed the set ${names.table} ${set} in a form Doorman does not read (${out.slice(0, 200)})`);
    const problems: string[] = [];
    if (found.type !== want) problems.push(`type ${found.type}, not ${want}`);
    for (const flag of ['interval', 'timeout']) if (!found.flags.includes(flag)) problems.push(`no flag ${flag}`);
    if (problems.length > 0) throw new FirewallError('DOORMAN_ERR_FIREWALL_SET', `${source}: ${key}: the set ${names.table} ${set} has ${problems.join(', ')}; ${hint.replace('create it with', 'delete it and create it again with')}`);
  }
}

/** `nft -j -t list set …`: a list holding metainfo and the one set, its type a word (a list for a concatenation). */
const listingSchema = z.object({
  nftables: z.array(z.unknown()).max(16),
});
const setItemSchema = z.object({
  set: z.object({
    type: z.union([z.string().max(64), z.array(z.string().max(64)).max(16)]),
    flags: z.array(z.string().max(32)).max(16).optional(),
  }),
});

/** The type and flags of the one set in `nft -j -t list set` output, or null. */
export function parseSetListing(json: string): { type: string; flags: string[] } | null {
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch {
    return null;
  }
  const list = listingSchema.safeParse(data);
  if (!list.success) return null;
  for (const item of list.data.nftables) {
    const s = setItemSchema.safeParse(item);
    if (!s.success) continue;
    const { type, flags } = s.data.set;
    return { type: typeof type === 'string' ? type : type.join(' . '), flags: flags ?? [] };
  }
  return null;
}
