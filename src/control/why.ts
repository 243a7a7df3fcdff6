/**
 * "Refused by what, until when, and how is it lifted?" for one address: its
 * recent refusals from this node's refusal record (../observability/refusal-log.ts),
 * each with its front-end, rule, counts, retry-after or ban, and the bans in
 * force covering it in both layers (local: operator and automatic; CrowdSec's),
 * each with the one command that lifts it (./lift.ts).
 *
 * In fleet mode every node keeps its own record (each refuses its own
 * clients), so every live node is asked over the fleet bus, as for the
 * connections list, and the answers are merged newest first, each refusal
 * naming its node. What another node answers is checked against a schema
 * before it is used; a node that answers nothing valid in time is named in
 * `missing`.
 */
import { z } from 'zod';
import type { Ban, BanLayer } from '../core/bans.js';
import { layerOf } from '../core/bans.js';
import type { Clock } from '../core/clock.js';
import type { Gatekeeper } from '../core/gate.js';
import { canonicalText, parseIp } from '../core/ip.js';
import { ControlInputError } from '../errors.js';
import type { FleetBus } from '../fleet/bus.js';
import type { RefusalLog } from '../observability/refusal-log.js';
import { serveWhy, type WhyArgs } from './fleet-rpc.js';
import { banLift, standing, type Lift } from './lift.js';

export type { Lift } from './lift.js';

/** One refusal (or a run of like ones) of the address, as one node recorded it. */
export interface WhyRefusal {
  readonly node: string;
  /** Epoch ms of the first and the latest refusal of the run, and how many. */
  readonly first: number;
  readonly last: number;
  readonly times: number;
  readonly service: string;
  /** The front-end that refused: proxy, policy, dovecot, nginx, haproxy. */
  readonly by: string;
  readonly country: string | null;
  readonly rule: string;
  readonly cause: string;
  readonly reason: string;
  readonly temporary: boolean;
  /** The count or rate that passed the limit, the limit, and what was counted; null where the rule counts nothing. */
  readonly count: number | null;
  readonly limit: number | null;
  readonly key: string | null;
  readonly retryAfterSec: number;
  /** When it stops refusing by itself (epoch ms); null: until someone changes it. */
  readonly until: number | null;
  /** Whether it would still refuse, as far as the node can tell without counting. */
  readonly inForce: boolean;
  readonly ban: WhyBanRef | null;
  readonly lift: Lift;
}

export interface WhyBanRef {
  readonly target: string;
  readonly layer: BanLayer;
  readonly origin: Ban['origin'];
  readonly strike: number;
  readonly until: number;
}

/** A ban in force covering the address, with the nodes that hold it. */
export interface WhyBan extends WhyBanRef {
  readonly nodes: readonly string[];
  readonly reason: string;
  readonly createdAt: number;
  readonly lift: Lift;
}

/** One node's part of the answer. */
export interface NodeWhy {
  readonly refusals: readonly WhyRefusal[];
  readonly bans: readonly WhyBan[];
}

export interface WhyAnswer extends NodeWhy {
  /** Canonical form. */
  readonly address: string;
  readonly country: string | null;
  /** Live nodes that did not answer in time, or answered something unreadable. */
  readonly missing: readonly string[];
  /** What the record keeps, so an empty answer can say how far back it looked. */
  readonly bounds: { readonly addresses: number; readonly perAddress: number; readonly maxAgeMs: number };
}

/** A node covers an address with few bans; more than this in an answer is not a real one. */
const MAX_BANS = 1000;
const MAX_REFUSALS = 100;
const str = (max: number) => z.string().max(max);
const ms = z.number().finite();
const lift = z.object({ command: str(600).nullable(), how: str(4000) });
const banRefShape = {
  target: str(64),
  layer: z.enum(['local', 'crowdsec']),
  origin: z.enum(['operator', 'auto', 'crowdsec']),
  strike: z.number().int().min(1),
  until: ms,
};
/**
 * Another node's answer. z.object, not strictObject: a newer node in the
 * fleet may add fields, which are dropped here rather than failing the question.
 */
const nodeAnswer = z.object({
  refusals: z
    .array(
      z.object({
        node: str(200),
        first: ms,
        last: ms,
        times: z.number().int().min(1),
        service: str(200),
        by: str(50),
        country: str(8).nullable(),
        rule: str(500),
        cause: str(50),
        reason: str(4000),
        temporary: z.boolean(),
        count: z.number().nullable(),
        limit: z.number().nullable(),
        key: str(1000).nullable(),
        retryAfterSec: z.number().min(0),
        until: ms.nullable(),
        inForce: z.boolean(),
        ban: z.object(banRefShape).nullable(),
        lift,
      }),
    )
    .max(MAX_REFUSALS),
  bans: z.array(z.object({ ...banRefShape, nodes: z.array(str(200)).max(1000), reason: str(4000), createdAt: ms, lift })).max(MAX_BANS),
});

export interface WhyDeskDeps {
  readonly node: string;
  readonly gate: Gatekeeper;
  readonly refusals: RefusalLog;
  readonly clock: Clock;
  /** Fleet mode: every node is asked; null: this node alone. */
  readonly fleet: FleetBus | null;
}

export class WhyDesk {
  private readonly d: WhyDeskDeps;

  constructor(deps: WhyDeskDeps) {
    this.d = deps;
    if (deps.fleet !== null) serveWhy(deps.fleet, (address) => this.local(address));
  }

  /** The address in canonical form; a ControlInputError when it is none. */
  static address(text: string): string {
    const ip = parseIp(text);
    if (ip === null) throw new ControlInputError('DOORMAN_ERR_ADDRESS', `"${text.slice(0, 64)}" is not an IP address`);
    return canonicalText(text, ip);
  }

  /** Every node's answer (in a fleet; else this node's), refusals newest first. */
  async ask(text: string): Promise<WhyAnswer> {
    const address = WhyDesk.address(text);
    const answer = (refusals: WhyRefusal[], bans: WhyBan[], missing: string[]): WhyAnswer => ({
      address,
      country: this.d.gate.countryOf(address),
      refusals: refusals.sort((a, b) => b.last - a.last),
      bans,
      missing,
      bounds: this.d.refusals.bounds,
    });
    if (this.d.fleet === null) {
      const own = this.local(address);
      return answer([...own.refusals], [...own.bans], []);
    }
    const r = await this.d.fleet.ask<unknown>('why', { address } satisfies WhyArgs);
    const refusals: WhyRefusal[] = [];
    const bans = new Map<string, WhyBan>();
    const missing = [...r.missing];
    for (const [node, raw] of r.answers) {
      const p = nodeAnswer.safeParse(raw);
      if (!p.success) {
        missing.push(node);
        continue;
      }
      refusals.push(...(p.data.refusals as WhyRefusal[]));
      // A fleet's local bans are the same on every node: one entry, naming the nodes that hold it.
      for (const b of p.data.bans as WhyBan[]) {
        const k = `${b.layer} ${b.target}`;
        const had = bans.get(k);
        if (had === undefined) bans.set(k, b);
        else bans.set(k, { ...(b.until > had.until ? b : had), nodes: [...new Set([...had.nodes, ...b.nodes])].sort() });
      }
    }
    return answer(refusals, [...bans.values()], missing);
  }

  /** This node's part: its record of the address and the bans it holds covering it. `address` is canonical. */
  local(address: string): NodeWhy {
    const ip = parseIp(address);
    if (ip === null) return { refusals: [], bans: [] };
    const { gate, clock, node } = this.d;
    const now = clock.now();
    const ctx = {
      rules: gate.rules,
      exception: gate.rules.exceptions.match(ip)?.text ?? null,
      banOf: (target: string, layer: BanLayer) => gate.bans.get(target, layer),
      now,
    };
    const refusals = this.d.refusals.recent(address).map((rec): WhyRefusal => {
      const f = rec.refusal;
      const s = standing({ refusal: f, address, service: rec.service, country: rec.country, last: rec.last }, ctx);
      return {
        node,
        first: rec.first,
        last: rec.last,
        times: rec.times,
        service: rec.service,
        by: rec.by,
        country: rec.country,
        rule: f.rule,
        cause: f.cause,
        reason: f.reason,
        temporary: f.temporary,
        count: f.count ?? null,
        limit: f.limit ?? null,
        key: f.key ?? null,
        retryAfterSec: f.retryAfterSec,
        until: s.until,
        inForce: s.inForce,
        ban: f.ban === undefined ? null : banRef(f.ban),
        lift: s.lift,
      };
    });
    // Every ban covering the address, networks included, in both layers (a lookup per prefix length, not a scan of CrowdSec's thousands).
    const bans = gate.bans.covering(ip, address, now).map((b): WhyBan => ({ ...banRef(b), nodes: [node], reason: b.reason, createdAt: b.createdAt, lift: banLift(b) }));
    return { refusals, bans };
  }
}

function banRef(b: Ban): WhyBanRef {
  return { target: b.target, layer: layerOf(b.origin), origin: b.origin, strike: b.strike, until: b.until };
}
