/**
 * The CrowdSec bouncer in a fleet (store.type redis): one node polls, every
 * node enforces.
 *
 * The Local API keeps one "last pull" time per bouncer key and answers each
 * delta from it, so two nodes polling with one key would each receive part
 * of the changes. One node polls: the holder of a lease in Redis (SET NX PX,
 * renewed by its holder every third of store.lease), taken over by another
 * node once it lapses (a dead holder), or at once when its holder stops
 * cleanly and deletes it. A node that cannot renew it stops polling when
 * its own reckoning of the lease runs out, so two never poll at once.
 *
 * After each poll that changed something the polling node writes the whole
 * list (target, end, reason per ban) to one key with a version, and says so
 * on the fleet bus; every other node reads it on that message, and on each
 * tick when the version moved (a message missed), and at start. The
 * poll's health is written every poll, for the others' status.
 *
 *   {prefix}{crowdsec}:lease    the polling node's name, expiring
 *   {prefix}{crowdsec}:list     {"version": n, "node": …, "at": ms, "bans": [{"t","u","r"}…]}
 *   {prefix}{crowdsec}:version  n
 *   {prefix}{crowdsec}:health   {"node": …, "health": {…}}
 *   channel {prefix}crowdsec    {"version": n, "from": node}
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import type { BanList } from '../core/bans.js';
import type { Clock } from '../core/clock.js';
import { isNetworkText } from '../core/networks.js';
import type { FleetBus } from '../fleet/bus.js';
import type { RedisClient } from '../store/redis-client.js';
import type { FleetLink, PollHealth, Role } from './bouncer.js';
import { mergeLayer, replaceLayer, type SnapshotBan } from './decision-set.js';

/** Take the lease if free, renew it if ours: 1 when this node holds it after the call. */
const ACQUIRE = `
local h = redis.call('GET', KEYS[1])
if h == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if h then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`;
/** Delete the lease if ours (a clean stop hands it over at once). */
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;
/** Write the list and bump the version in one step: KEYS list, version; ARGV the JSON with @V@ for the version. */
const WRITE = `
local v = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], (string.gsub(ARGV[1], '"@V@"', tostring(v))))
return v
`;

interface LeaseClient {
  doormanCrowdsecAcquire(numKeys: number, ...args: string[]): Promise<number>;
  doormanCrowdsecRelease(numKeys: number, ...args: string[]): Promise<number>;
  doormanCrowdsecWrite(numKeys: number, ...args: string[]): Promise<number>;
}

/** Reading a list back, every field bounded as the poller wrote it. */
const listSchema = z.object({
  version: z.number().int(),
  node: z.string().max(64),
  bans: z.array(z.object({ t: z.string().max(64), u: z.number(), r: z.string().max(512) })),
});
const healthSchema = z.object({
  node: z.string().max(64),
  health: z.object({
    up: z.boolean().nullable(),
    lastSuccess: z.number().nullable(),
    lastFailure: z.number().nullable(),
    lastError: z.object({ code: z.string().max(64), message: z.string().max(1024) }).nullable(),
  }),
});

export interface CrowdsecFleetOptions {
  readonly client: RedisClient;
  readonly bus: FleetBus;
  readonly prefix: string;
  readonly node: string;
  readonly leaseMs: number;
  readonly bans: BanList;
  readonly clock: Clock;
  readonly log: Logger;
}

export class CrowdsecFleet implements FleetLink {
  private readonly o: CrowdsecFleetOptions;
  private readonly keys: { lease: string; list: string; version: string; health: string };
  readonly channel: string;
  /** Until when (this node's clock) the lease is surely ours: renewed at most a lease ago, less a margin. */
  private leaseUntil = 0;
  private loaded = -1;
  private reading: Promise<void> | null = null;
  published: { health: PollHealth; node: string } | null = null;

  private constructor(o: CrowdsecFleetOptions) {
    this.o = o;
    // One hash tag: on a Redis Cluster the list and its version share a slot, as the script needs.
    const k = `${o.prefix}{crowdsec}`;
    this.keys = { lease: `${k}:lease`, list: `${k}:list`, version: `${k}:version`, health: `${k}:health` };
    this.channel = `${o.prefix}crowdsec`;
    o.client.defineCommand('doormanCrowdsecAcquire', { lua: ACQUIRE });
    o.client.defineCommand('doormanCrowdsecRelease', { lua: RELEASE });
    o.client.defineCommand('doormanCrowdsecWrite', { lua: WRITE });
  }

  /** Hears the polling node's announcements on the bus. */
  static async open(o: CrowdsecFleetOptions): Promise<CrowdsecFleet> {
    const f = new CrowdsecFleet(o);
    await o.bus
      .subscribe(f.channel, (m) => {
        if (m['from'] !== o.node) void f.follow().catch(() => undefined);
      })
      .catch((err: unknown) => o.log.warn({ err: (err as Error).message }, 'crowdsec: not subscribed to the fleet channel; the list is read on every tick instead'));
    return f;
  }

  private get redis(): LeaseClient {
    return this.o.client as unknown as LeaseClient;
  }

  async acquire(): Promise<Role> {
    const now = this.o.clock.now();
    try {
      const held = await this.redis.doormanCrowdsecAcquire(1, this.keys.lease, this.o.node, String(this.o.leaseMs));
      if (held === 1) {
        // A margin for the time the call took and clocks that drift: stop before another node may start.
        this.leaseUntil = now + this.o.leaseMs - Math.min(1000, this.o.leaseMs / 10);
        return 'poller';
      }
      this.leaseUntil = 0;
      return 'follower';
    } catch {
      return now < this.leaseUntil ? 'poller' : 'fleet-unreachable';
    }
  }

  async publish(list: readonly SnapshotBan[] | null, health: PollHealth): Promise<void> {
    const node = this.o.node;
    this.published = { health, node };
    await this.o.client.set(this.keys.health, JSON.stringify({ node, health }));
    if (list === null) return;
    const doc = JSON.stringify({ version: '@V@', node, at: this.o.clock.now(), bans: list });
    const v = await this.redis.doormanCrowdsecWrite(2, this.keys.list, this.keys.version, doc);
    this.loaded = v;
    await this.o.client.publish(this.channel, JSON.stringify({ version: v, from: node }));
  }

  follow(): Promise<void> {
    // One read at a time: a message and a tick at once read once.
    this.reading ??= this.read().finally(() => (this.reading = null));
    return this.reading;
  }

  private async read(): Promise<void> {
    const [version, health] = await Promise.all([this.o.client.get(this.keys.version), this.o.client.get(this.keys.health)]);
    if (health !== null) {
      try {
        this.published = healthSchema.parse(JSON.parse(health));
      } catch {
        // not ours: ignored
      }
    }
    const v = version === null ? 0 : Number(version);
    if (v === this.loaded || v === 0) return;
    const text = await this.o.client.get(this.keys.list);
    if (text === null) return;
    const doc = listSchema.parse(JSON.parse(text));
    const now = this.o.clock.now();
    const bans = doc.bans.filter((b) => isNetworkText(b.t));
    const first = this.loaded < 0;
    this.loaded = doc.version;
    if (first) {
      const n = replaceLayer(this.o.bans, bans, now);
      this.o.log.info({ bans: n, from: doc.node, version: doc.version }, 'crowdsec: the fleet\'s list of CrowdSec bans loaded');
    } else {
      const c = mergeLayer(this.o.bans, bans, now);
      if (c.added > 0 || c.removed > 0) this.o.log.info({ ...c, from: doc.node, version: doc.version }, 'crowdsec: the fleet\'s list of CrowdSec bans changed');
    }
  }

  async close(): Promise<void> {
    if (this.leaseUntil > 0) await this.redis.doormanCrowdsecRelease(1, this.keys.lease, this.o.node).catch(() => undefined);
    this.leaseUntil = 0;
  }
}
