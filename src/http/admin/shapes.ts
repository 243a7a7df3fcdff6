/**
 * The admin API's JSON shapes (docs/admin-api.md, "Shapes"): domain objects
 * turned into snake_case JSON with ISO 8601 times and ages in seconds. One
 * place, so the routes and the event stream cannot drift apart.
 */
import type { Ban } from '../../core/bans.js';
import type { ConnectionView } from '../../core/connections.js';
import type { Decision } from '../../core/decision.js';
import type { DoorEvents } from '../../core/events.js';
import type { Peak } from '../../core/peaks.js';
import type { Lift, WhyAnswer, WhyBanRef } from '../../control/why.js';

export interface ConnectionJson {
  id: string;
  service: string;
  protocol: string;
  client: { address: string; port: number };
  country: string | null;
  listen: string;
  backend: string;
  started_at: string;
  age_s: number;
  bytes_in: number;
  bytes_out: number;
  encrypted: boolean;
  /** The node holding it: in a fleet, any node lists every node's connections. */
  node: string | null;
}

/**
 * `now` is wall-clock milliseconds: the proxy stamps connections with
 * Date.now(), not with the engine's clock, so ages are measured the same way.
 */
export function connectionJson(c: ConnectionView & { node?: string }, now: number): ConnectionJson {
  return {
    id: c.id,
    service: c.service,
    protocol: c.protocol,
    client: { address: c.client.address, port: c.client.port },
    country: c.country,
    listen: c.listen,
    backend: c.backend,
    started_at: new Date(c.startedAt).toISOString(),
    age_s: Math.max(0, Math.floor((now - c.startedAt) / 1000)),
    bytes_in: c.bytesIn,
    bytes_out: c.bytesOut,
    encrypted: c.encrypted,
    node: c.node ?? null,
  };
}

export interface BanJson {
  target: string;
  until: string;
  left_s: number;
  reason: string;
  created_at: string;
  /** operator, auto (a rule of Doorman's) or crowdsec. */
  origin: string;
  /** 1 for a first ban; more for a repeat offender's longer ban. */
  strike: number;
}

/** `now` is the engine's clock, which set the ban's times. */
export function banJson(b: Ban, now: number): BanJson {
  return {
    target: b.target,
    until: new Date(b.until).toISOString(),
    left_s: Math.max(0, Math.ceil((b.until - now) / 1000)),
    reason: b.reason,
    created_at: new Date(b.createdAt).toISOString(),
    origin: b.origin,
    strike: b.strike,
  };
}

export interface DecisionJson {
  action: 'allow' | 'refuse';
  rule: string | null;
  reason: string;
  retry_after_s: number;
  dry_run: Array<{ rule: string; reason: string }>;
  exempt: string | null;
  country: string | null;
}

export function decisionJson(d: Decision): DecisionJson {
  const r = d.refusal;
  return {
    action: d.action,
    rule: r?.rule ?? null,
    // An allow has no rule to quote: say why in words all the same.
    reason: r?.reason ?? d.exempt ?? 'no rule refuses',
    retry_after_s: r?.retryAfterSec ?? 0,
    dry_run: d.dryRun.map((x) => ({ rule: x.rule, reason: x.reason })),
    exempt: d.exempt,
    country: d.country,
  };
}

export function peakJson(p: Peak): { value: number; key: string; at: string } {
  return { value: p.value, key: p.key, at: new Date(p.at).toISOString() };
}

type DisconnectEvent = DoorEvents['disconnect'][0];

export function disconnectJson(e: DisconnectEvent): { id: string; service: string; address: string; why: string; bytes_in: number; bytes_out: number } {
  return { id: e.id, service: e.service, address: e.address, why: e.why, bytes_in: e.bytesIn, bytes_out: e.bytesOut };
}

type LiftJson = { command: string | null; how: string };
type BanRefJson = { target: string; layer: string; origin: string; strike: number; until: string };

/** GET /api/why's answer: the address's bans in force and its recent refusals, each with how it is lifted. */
export function whyJson(w: WhyAnswer, now: number) {
  const time = (ms: number) => new Date(ms).toISOString();
  const ref = (b: WhyBanRef): BanRefJson => ({ target: b.target, layer: b.layer, origin: b.origin, strike: b.strike, until: time(b.until) });
  const lift = (l: Lift): LiftJson => ({ command: l.command, how: l.how });
  return {
    address: w.address,
    country: w.country,
    bans: w.bans.map((b) => ({ ...ref(b), left_s: Math.max(0, Math.ceil((b.until - now) / 1000)), reason: b.reason, created_at: time(b.createdAt), nodes: [...b.nodes], lift: lift(b.lift) })),
    refusals: w.refusals.map((r) => ({
      at: time(r.last),
      first_at: time(r.first),
      times: r.times,
      node: r.node,
      service: r.service,
      by: r.by,
      country: r.country,
      rule: r.rule,
      cause: r.cause,
      reason: r.reason,
      temporary: r.temporary,
      count: r.count,
      limit: r.limit,
      key: r.key,
      retry_after_s: r.retryAfterSec,
      until: r.until === null ? null : time(r.until),
      in_force: r.inForce,
      ban: r.ban === null ? null : ref(r.ban),
      lift: lift(r.lift),
    })),
    missing_nodes: [...w.missing],
    record: { addresses: w.bounds.addresses, per_address: w.bounds.perAddress, max_age_s: Math.round(w.bounds.maxAgeMs / 1000) },
  };
}
