/**
 * Doorman as a CrowdSec bouncer: it asks the Local API what was decided
 * (./lapi-client.ts), holds every ban decision of scope Ip or Range by id
 * (./decision-set.ts) and keeps the crowdsec layer of the gate's ban list
 * in step, so that every front-end refuses those clients. At start, and
 * after any failed poll, it asks for the whole list (startup=true) and puts
 * it in place of the layer; otherwise it asks for the changes since its
 * last successful pull and applies them.
 *
 * A decision that covers or overlaps an exception network is not applied:
 * logged once per target and counted. A poll that fails keeps the bans
 * already held (they end when CrowdSec said they would); the failure is
 * logged when it starts, at most every FAILURE_LOG_MS while it lasts, and
 * when it ends, and shown in the status and the metrics. Each poll that
 * changed the ban list writes one summary line to the audit log.
 *
 * In a fleet only the node holding the lease polls (./fleet.ts); the
 * others load what it published. The loop runs on timers that never keep
 * the process alive; stop() ends it and aborts a request in flight.
 */
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import type { Gatekeeper } from '../core/gate.js';
import { parseNetwork, type Network } from '../core/networks.js';
import { overlaps } from '../control/guardrails.js';
import type { AuditSink } from '../state/audit-log.js';
import { DecisionSet, replaceLayer, syncTargets, type SnapshotBan } from './decision-set.js';
import { CrowdsecError, fetchStream, shownUrl, type LapiOptions } from './lapi-client.js';
import type { CrowdsecCache } from './cache.js';
import type { Decision, SkipReason, StreamAnswer } from './stream.js';

/** While the Local API keeps failing the same way, one reminder line this often. */
export const FAILURE_LOG_MS = 5 * 60_000;
/** How long start() waits for the first poll before the daemon goes on without it. */
const START_WAIT_MS = 5000;
/** Two ends of one decision read from two answers differ by the time between them, well under this. */
const SAME_END_MS = 5000;
/** Targets whose skip for an exception network is logged; past this many, only counted. */
const LOGGED_SKIPS_MAX = 10_000;

export type Role = 'single' | 'poller' | 'follower' | 'fleet-unreachable';

/** How a poll went, as the status and the metrics show it. */
export interface PollHealth {
  /** null before the first poll. */
  readonly up: boolean | null;
  readonly lastSuccess: number | null;
  readonly lastFailure: number | null;
  readonly lastError: { readonly code: string; readonly message: string } | null;
}

/** What a fleet needs of the loop: who polls, and where the polled list goes. */
export interface FleetLink {
  /** Takes or renews the lease: this node polls while it holds it. */
  acquire(): Promise<Role>;
  /** The polling node, after each poll: the list in force when it changed (null: unchanged), and the poll's health. */
  publish(list: readonly SnapshotBan[] | null, health: PollHealth): Promise<void>;
  /** The other nodes: loads the polling node's list if it changed. */
  follow(): Promise<void>;
  /** The polling node's health and name, as last published (for a follower's status). */
  readonly published: { readonly health: PollHealth; readonly node: string } | null;
  close(): Promise<void>;
}

export interface BouncerOptions {
  readonly lapi: LapiOptions;
  readonly pollIntervalMs: number;
  /** Fleet mode: how often the lease is renewed (a third of it); else the poll interval. */
  readonly tickMs: number;
  readonly gate: Gatekeeper;
  readonly audit: AuditSink;
  readonly clock: Clock;
  readonly log: Logger;
  readonly fleet: FleetLink | null;
  /** A single host: where the list is saved when it changes, and read at start (./cache.ts). */
  readonly cache?: CrowdsecCache | null;
  /** Told of each poll's result, for the metrics. */
  readonly onPoll?: (ok: boolean, startup: boolean) => void;
  /** Told of decisions skipped, by why. */
  readonly onSkip?: (why: SkipReason | 'exception', n: number) => void;
}

export class CrowdsecBouncer {
  readonly url: string;
  private readonly o: BouncerOptions;
  private readonly set = new DecisionSet();
  private readonly loggedSkips = new Set<string>();
  private role: Role;
  private needStartup = true;
  private lastPollAt = -Infinity;
  private health: PollHealth = { up: null, lastSuccess: null, lastFailure: null, lastError: null };
  private failuresInARow = 0;
  private failingSince: number | null = null;
  private lastFailureLog = -Infinity;
  private readonly polls = { ok: 0, failed: 0 };
  private readonly skipped: Record<SkipReason | 'exception', number> = { malformed: 0, type: 0, scope: 0, over: 0, exception: 0 };
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private readonly abort = new AbortController();
  private stopped = false;

  constructor(o: BouncerOptions) {
    this.o = o;
    this.url = shownUrl(o.lapi.url);
    this.role = o.fleet === null ? 'single' : 'follower';
  }

  /** Runs the first round now (a fleet node loads the published list, or polls), then one every tick. */
  async start(): Promise<void> {
    // A fleet node enforces what the fleet knows at once, whether or not it will poll and the Local API answers.
    await this.o.fleet?.follow().catch((err: unknown) => this.o.log.warn({ err: (err as Error).message }, 'crowdsec: the fleet\'s list could not be read at start'));
    // A single host enforces the list it saved last, until the Local API answers with the whole list again.
    const saved = this.o.fleet === null ? await this.o.cache?.load(this.o.clock.now()) : null;
    if (saved !== null && saved !== undefined) {
      const n = replaceLayer(this.o.gate.bans, saved, this.o.clock.now());
      this.o.log.info({ file: this.o.cache?.path, bans: n }, 'crowdsec: the ban list saved last is in force until the Local API answers');
    }
    // The daemon waits for the first answer a little, not for a Local API that hangs.
    let late: NodeJS.Timeout | undefined;
    const waited = await Promise.race([this.tick().then(() => true), new Promise<boolean>((resolve) => (late = setTimeout(() => resolve(false), START_WAIT_MS)))]);
    clearTimeout(late);
    if (!waited) this.o.log.warn({ url: this.url, waited_ms: START_WAIT_MS }, 'crowdsec: no answer yet from the Local API; starting without its bans, which follow when it answers');
    this.schedule();
  }

  /** One round now, outside the schedule (tests, and start). */
  tick(): Promise<void> {
    if (this.running !== null) return this.running;
    this.running = this.round().finally(() => (this.running = null));
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.abort.abort();
    await this.running?.catch(() => undefined);
    await this.o.fleet?.close();
  }

  /** The bouncer as /api/status shows it. */
  status(): Record<string, unknown> {
    const shown = this.role === 'follower' ? (this.o.fleet?.published ?? null) : null;
    const h = shown?.health ?? this.health;
    const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());
    return {
      lapi_url: this.url,
      role: this.role,
      ...(shown !== null ? { poller: shown.node } : {}),
      up: h.up,
      last_success: iso(h.lastSuccess),
      last_failure: iso(h.lastFailure),
      last_error: h.lastError,
      failures_in_a_row: this.role === 'follower' ? null : this.failuresInARow,
      polls: { ...this.polls },
      decisions: this.set.size,
      bans: this.o.gate.bans.sizes().crowdsec,
      skipped: { ...this.skipped },
      poll_interval_s: this.o.pollIntervalMs / 1000,
    };
  }

  /** The health the metrics read: this node's polls, or the polling node's as published. */
  get shownHealth(): PollHealth {
    return (this.role === 'follower' ? this.o.fleet?.published?.health : undefined) ?? this.health;
  }

  get currentRole(): Role {
    return this.role;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.tick().finally(() => this.schedule());
    }, this.o.tickMs);
    this.timer.unref();
  }

  private async round(): Promise<void> {
    if (this.stopped) return;
    const fleet = this.o.fleet;
    if (fleet !== null) {
      const role = await fleet.acquire();
      if (role !== this.role) this.o.log.info({ role, was: this.role }, `crowdsec: ${roleWords(role)}`);
      // A node that takes the polling over asks for the whole list: the others' deltas are not its own.
      if (role === 'poller' && this.role !== 'poller') this.needStartup = true;
      this.role = role;
      if (role === 'follower') {
        await fleet.follow().catch((err: unknown) => this.o.log.warn({ err: (err as Error).message }, 'crowdsec: the polling node\'s list could not be read from the fleet store; the bans held stay'));
        return;
      }
      if (role === 'fleet-unreachable') return;
    }
    const now = this.o.clock.now();
    if (now - this.lastPollAt < this.o.pollIntervalMs - 5) return;
    this.lastPollAt = now;
    await this.poll();
  }

  /** One request to the Local API and what follows from it. */
  private async poll(): Promise<void> {
    const startup = this.needStartup;
    let answer: StreamAnswer;
    try {
      answer = (await fetchStream(this.o.lapi, startup, this.abort.signal)).answer;
    } catch (err) {
      if (this.stopped) return;
      this.failed(err instanceof CrowdsecError ? err : new CrowdsecError('DOORMAN_ERR_CROWDSEC_UNREACHABLE', `${this.url}: ${(err as Error).message}`));
      return;
    }
    if (this.stopped) return;
    const now = this.o.clock.now();
    for (const [why, n] of Object.entries(answer.skipped) as Array<[SkipReason, number]>) this.skip(why, n);
    const accept = (d: Decision) => this.accept(d);
    let added = 0;
    let removed = 0;
    if (startup) {
      const before = new Map(this.o.gate.bans.list(now, 'crowdsec').map((b) => [b.target, b.until]));
      this.set.clear();
      this.set.apply(answer.added, [], now, accept);
      const list = this.set.snapshot(now);
      replaceLayer(this.o.gate.bans, list, now);
      // What the whole list changed, for the log and the audit: a restart's reload of the same list changes nothing.
      for (const b of list) {
        const was = before.get(b.t);
        // Each answer states the time left as of its writing: the same decision read again ends a few ms apart.
        if (was === undefined || Math.abs(was - b.u) > SAME_END_MS) added++;
        before.delete(b.t);
      }
      removed = before.size;
    } else {
      const touched = this.set.apply(answer.added, answer.deleted, now, accept);
      const n = syncTargets(this.o.gate.bans, touched, (t) => this.set.banOf(t, now), now);
      added = n.added;
      removed = n.removed;
    }
    this.set.sweep(now);
    this.needStartup = false;
    this.succeeded(now, startup);
    await this.publish(startup || added > 0 || removed > 0 ? this.set.snapshot(now) : null);
    if (added > 0 || removed > 0) {
      const details = { startup, added, removed, bans: this.o.gate.bans.sizes().crowdsec, decisions: this.set.size };
      this.o.log.info(details, startup ? 'crowdsec: ban list loaded' : 'crowdsec: ban list changed');
      await this.o.audit.append({ action: 'crowdsec.sync', target: this.url, by: 'crowdsec', reason: null, details }, now).catch((err: unknown) => this.o.log.error({ err: (err as Error).message }, 'crowdsec: audit log not written'));
    }
  }

  /** Fleet mode: the list when it changed (else null), and this poll's health, for the other nodes. */
  private async publish(list: readonly SnapshotBan[] | null): Promise<void> {
    if (list !== null && this.o.fleet === null && this.o.cache) {
      await this.o.cache.save(list).catch((err: unknown) => this.o.log.warn({ file: this.o.cache?.path, err: (err as Error).message }, 'crowdsec: the ban list could not be saved; a restart while the Local API is down starts without it'));
    }
    await this.o.fleet?.publish(list, this.health).catch((err: unknown) => this.o.log.warn({ err: (err as Error).message }, 'crowdsec: not published to the fleet store; the other nodes keep the list they have'));
  }

  /** Whether a decision may be applied: not over an exception network. */
  private accept(d: Decision): boolean {
    let net: Network;
    try {
      net = parseNetwork(d.target);
    } catch {
      this.skip('malformed', 1);
      return false;
    }
    const ex = this.o.gate.rules.exceptions.networks.find((e) => overlaps(net, e));
    if (ex === undefined) return true;
    this.skip('exception', 1);
    if (!this.loggedSkips.has(d.target) && this.loggedSkips.size < LOGGED_SKIPS_MAX) {
      this.loggedSkips.add(d.target);
      this.o.log.warn({ target: d.target, exception: ex.text, scenario: d.scenario, origin: d.origin, decision: d.id }, 'crowdsec: a decision over an exception network is not applied');
    }
    return false;
  }

  private skip(why: SkipReason | 'exception', n: number): void {
    if (n === 0) return;
    this.skipped[why] += n;
    this.o.onSkip?.(why, n);
  }

  private succeeded(now: number, startup: boolean): void {
    this.polls.ok++;
    this.o.onPoll?.(true, startup);
    if (this.failuresInARow > 0) {
      this.o.log.info({ url: this.url, failed_polls: this.failuresInARow, down_since: new Date(this.failingSince ?? now).toISOString() }, 'crowdsec: the Local API answers again; the whole list was asked for');
    }
    this.failuresInARow = 0;
    this.failingSince = null;
    this.lastFailureLog = -Infinity;
    this.health = { ...this.health, up: true, lastSuccess: now };
  }

  private failed(err: CrowdsecError): void {
    const now = this.o.clock.now();
    this.polls.failed++;
    this.o.onPoll?.(false, this.needStartup);
    // The answer may have been lost after the Local API moved this bouncer's pull time: ask for everything next.
    this.needStartup = true;
    const same = this.health.lastError?.code === err.code;
    this.failuresInARow++;
    this.failingSince ??= now;
    this.health = { ...this.health, up: false, lastFailure: now, lastError: { code: err.code, message: err.message } };
    if (this.failuresInARow === 1 || !same || now - this.lastFailureLog >= FAILURE_LOG_MS) {
      this.lastFailureLog = now;
      const fields = { code: err.code, err: err.message, failed_polls: this.failuresInARow, bans_kept: this.o.gate.bans.sizes().crowdsec };
      this.o.log.warn(fields, this.failuresInARow === 1 ? 'crowdsec: the Local API could not be read; the bans held stay until they end' : 'crowdsec: the Local API still cannot be read');
    }
    void this.publish(null);
  }
}

function roleWords(role: Role): string {
  switch (role) {
    case 'poller':
      return 'this node now polls the Local API for the fleet';
    case 'follower':
      return 'another node polls the Local API; this one loads its list from the fleet store';
    case 'fleet-unreachable':
      return 'the fleet store cannot be reached: no node polls until it can; the bans held stay';
    default:
      return 'polling the Local API';
  }
}
