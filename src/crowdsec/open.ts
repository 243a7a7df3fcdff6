/**
 * The CrowdSec adapter, opened by the composition root: the bouncer when
 * crowdsec.lapi_url is set, the signals log when crowdsec.signals_log is,
 * their metrics, each pushed on the close stack. Off by default: with
 * neither key set nothing is opened.
 *
 *   doorman_crowdsec_up                            gauge, 1 while the Local API's last poll succeeded, 0 after a failed
 *                                                  one (a fleet's other nodes show the polling node's)
 *   doorman_crowdsec_polls_total{result}           counter, this node's polls: ok, failed
 *   doorman_crowdsec_last_success_timestamp_seconds gauge, when a poll last succeeded
 *   doorman_crowdsec_poller                        gauge, 1 on the node that polls (always 1 alone)
 *   doorman_crowdsec_skipped_total{why}            counter, decisions not applied: exception, type, scope, malformed, over
 *   doorman_crowdsec_signals_total{result}         counter, signal lines: written, dropped
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { CloseStack } from '../close-stack.js';
import type { Config } from '../config/load.js';
import type { Clock } from '../core/clock.js';
import type { DoorEventBus } from '../core/events.js';
import type { Gatekeeper } from '../core/gate.js';
import { DoormanError } from '../errors.js';
import type { FleetBus } from '../fleet/bus.js';
import type { AuditSink } from '../state/audit-log.js';
import type { RedisClient } from '../store/redis-client.js';
import { packageVersion } from '../version.js';
import { CrowdsecBouncer } from './bouncer.js';
import { CrowdsecCache } from './cache.js';
import { CrowdsecFleet } from './fleet.js';
import { SignalsLog } from './signals.js';

export interface OpenedCrowdsec {
  readonly bouncer: CrowdsecBouncer | null;
  readonly signals: SignalsLog | null;
}

/** The bouncer key: crowdsec.api_key, or the first line of crowdsec.api_key_file (read once, at start). */
export function loadApiKey(c: Config['crowdsec']): string {
  if (c.api_key !== null) return c.api_key;
  const file = c.api_key_file as string;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new DoormanError('DOORMAN_ERR_CROWDSEC_KEY_FILE', `crowdsec.api_key_file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const key = text.split('\n')[0]?.trim() ?? '';
  if (key === '') throw new DoormanError('DOORMAN_ERR_CROWDSEC_KEY_FILE', `crowdsec.api_key_file ${file}: the first line must hold the bouncer key`);
  return key;
}

export async function openCrowdsec(o: {
  readonly config: Config;
  readonly gate: Gatekeeper;
  readonly events: DoorEventBus;
  readonly audit: AuditSink;
  readonly clock: Clock;
  readonly log: Logger;
  readonly closing: CloseStack;
  readonly register: Registry;
  /** Fleet mode: the Redis client, the bus and this node's name. */
  readonly fleet: { readonly client: RedisClient; readonly bus: FleetBus; readonly node: string } | null;
}): Promise<OpenedCrowdsec> {
  const c = o.config.crowdsec;
  const log = o.log;
  let signals: SignalsLog | null = null;
  if (c.signals_log !== null) {
    const opened = await SignalsLog.open(c.signals_log, o.events, o.gate, o.clock, log);
    signals = opened;
    o.closing.push('crowdsec signals log', () => opened.close());
    log.info({ file: c.signals_log }, 'crowdsec: refusals and failed logins are written to the signals log');
  }
  let bouncer: CrowdsecBouncer | null = null;
  if (c.lapi_url !== null) {
    const apiKey = loadApiKey(c);
    const fleet = o.fleet === null ? null : await CrowdsecFleet.open({ client: o.fleet.client, bus: o.fleet.bus, prefix: o.config.store.redis.prefix, node: o.fleet.node, leaseMs: o.config.store.lease, bans: o.gate.bans, clock: o.clock, log });
    const m = bouncerMetrics(o.register, () => bouncer);
    bouncer = new CrowdsecBouncer({
      lapi: {
        url: c.lapi_url,
        apiKey,
        timeoutMs: c.request_timeout,
        maxBytes: c.max_response_bytes,
        origins: c.origins,
        scenariosContaining: c.scenarios_containing,
        scenariosNotContaining: c.scenarios_not_containing,
        userAgent: `doorman/${packageVersion()}`,
      },
      pollIntervalMs: c.poll_interval,
      // A fleet node renews the lease three times a lease, polling or not.
      tickMs: fleet === null ? c.poll_interval : Math.min(c.poll_interval, Math.floor(o.config.store.lease / 3)),
      gate: o.gate,
      audit: o.audit,
      clock: o.clock,
      log,
      fleet,
      cache: fleet === null ? new CrowdsecCache(join(dirname(o.config.state.file), 'crowdsec-bans.json'), log) : null,
      onPoll: (ok) => m.polls.inc({ result: ok ? 'ok' : 'failed' }),
      onSkip: (why, n) => m.skipped.inc({ why }, n),
    });
    const opened = bouncer;
    o.closing.push('crowdsec bouncer', () => opened.stop());
    log.info({ url: opened.url, poll_interval_s: c.poll_interval / 1000, fleet: fleet !== null }, 'crowdsec: bouncer started');
    // The first round runs now: the bans CrowdSec holds are in force before the front-ends open.
    await opened.start();
  }
  if (signals !== null) {
    const s = signals;
    new Counter({
      name: 'doorman_crowdsec_signals_total',
      help: 'Lines written to the signals log for CrowdSec, and dropped (the disk did not keep up)',
      labelNames: ['result'],
      registers: [o.register],
      collect() {
        this.reset();
        this.inc({ result: 'written' }, s.written);
        this.inc({ result: 'dropped' }, s.dropped);
      },
    });
  }
  return { bouncer, signals };
}

function bouncerMetrics(register: Registry, get: () => CrowdsecBouncer | null) {
  const registers = [register];
  new Gauge({
    name: 'doorman_crowdsec_up',
    help: "1 while CrowdSec's Local API answered the last poll (in a fleet, the polling node's), 0 after a failed one",
    registers,
    collect() {
      const up = get()?.shownHealth.up;
      // Before the first poll nothing is known: no sample, rather than a false alarm.
      if (up === null || up === undefined) this.reset();
      else this.set(up ? 1 : 0);
    },
  });
  new Gauge({
    name: 'doorman_crowdsec_last_success_timestamp_seconds',
    help: "When CrowdSec's Local API last answered a poll (unix seconds)",
    registers,
    collect() {
      const t = get()?.shownHealth.lastSuccess ?? null;
      if (t === null) this.reset();
      else this.set(t / 1000);
    },
  });
  new Gauge({
    name: 'doorman_crowdsec_poller',
    help: 'Whether this node polls the Local API (in a fleet, one node does)',
    registers,
    collect() {
      const r = get()?.currentRole;
      this.set(r === 'single' || r === 'poller' ? 1 : 0);
    },
  });
  const polls = new Counter({ name: 'doorman_crowdsec_polls_total', help: "Polls of CrowdSec's Local API by this node, by result: ok, failed", labelNames: ['result'], registers });
  const skipped = new Counter({ name: 'doorman_crowdsec_skipped_total', help: 'CrowdSec decisions not applied, by why: exception (over an exception network), type (not ban), scope, malformed, over (already ended)', labelNames: ['why'], registers });
  for (const result of ['ok', 'failed']) polls.inc({ result }, 0);
  for (const why of ['exception', 'type', 'scope', 'malformed', 'over']) skipped.inc({ why }, 0);
  return { polls, skipped };
}
