/**
 * Run-time state (bans, country rules) shared by a fleet, in Redis.
 *
 * The state is one JSON document with a version number. A change is a
 * compare-and-set (one Lua call: write only if the version is still the one
 * read, then bump it and publish the new version), retried on a conflict, so
 * two nodes changing at once both land, in some order, and neither is lost.
 * Every node hears the publication and reloads within a second; a poll every
 * few seconds and a reload on every reconnection cover messages missed while
 * a node was cut off.
 *
 * The host's own state file stays as a cache: it is rewritten after every
 * change, local or remote, and read at start when Redis cannot be reached,
 * so a node never starts without the fleet's bans because Redis was down.
 * When Redis holds no state yet, the first node seeds it from its file.
 */
import type { Logger } from 'pino';
import { StoreUnavailableError } from '../errors.js';
import { deepFreeze } from '../config/load.js';
import { EMPTY_STATE, parseState, runtimeStateSchema, type RuntimeState, type RuntimeStateStore, type StateStore } from '../state/runtime-state.js';
import type { RedisClient } from '../store/redis-client.js';

/** CAS key:state key:version — expected version, new JSON, channel, message. Returns the new version, or -1 on a conflict. */
const CAS = `
local v = tonumber(redis.call('GET', KEYS[2]) or '0')
if v ~= tonumber(ARGV[1]) then return -1 end
redis.call('SET', KEYS[1], ARGV[2])
v = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[3], (string.gsub(ARGV[4], '@V@', tostring(v))))
return v
`;

/** Reads state and version together. */
const GET = `return { redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]) }`;

const POLL_MS = 5000;
const MAX_CONFLICTS = 20;

interface CasClient {
  doormanStateCas(numKeys: number, ...args: string[]): Promise<number>;
  doormanStateGet(numKeys: number, ...args: string[]): Promise<[string | null, string | null]>;
}

export interface FleetStateOptions {
  readonly client: RedisClient;
  readonly prefix: string;
  readonly node: string;
  /** The host's state file, kept as a cache. */
  readonly cache: StateStore;
  readonly log: Logger;
}

export class FleetState implements RuntimeStateStore {
  readonly path: string;
  private readonly o: FleetStateOptions;
  private readonly key: string;
  private readonly versionKey: string;
  readonly channel: string;
  private state: RuntimeState;
  private version = -1;
  private tail: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  /** Called with the new state after a change made elsewhere. */
  onRemoteChange: ((s: RuntimeState) => void) | null = null;

  private constructor(o: FleetStateOptions) {
    this.o = o;
    // One hash tag: on a Redis Cluster both keys live in one slot, as a script needs.
    this.key = `${o.prefix}{state}`;
    this.versionKey = `${o.prefix}{state}:version`;
    this.channel = `${o.prefix}events`;
    this.path = `redis ${this.key} (cached in ${o.cache.path})`;
    this.state = o.cache.current;
    o.client.defineCommand('doormanStateCas', { lua: CAS });
    o.client.defineCommand('doormanStateGet', { lua: GET, readOnly: true });
  }

  private get cas(): CasClient {
    return this.o.client as unknown as CasClient;
  }

  /** Loads the fleet's state, or seeds Redis with this host's; with Redis down, starts from the cache. */
  static async open(o: FleetStateOptions): Promise<FleetState> {
    const s = new FleetState(o);
    try {
      await s.reload();
      if (s.version === 0 && (o.cache.current.bans.length > 0 || Object.keys(o.cache.current.countries).length > 0)) {
        await s.update(() => o.cache.current);
        o.log.info({ bans: o.cache.current.bans.length }, 'fleet state: Redis had none; seeded from this host\'s state file');
      }
    } catch (err) {
      o.log.error({ err: (err as Error).message, cache: o.cache.path }, 'fleet state: Redis unreachable at start; using the cached state until it answers');
    }
    s.timer = setInterval(() => void s.reload().catch(() => undefined), POLL_MS);
    s.timer.unref();
    return s;
  }

  get current(): RuntimeState {
    return this.state;
  }

  update(change: (s: RuntimeState) => RuntimeState): Promise<RuntimeState> {
    const run = this.tail.then(async () => {
      for (let attempt = 0; attempt < MAX_CONFLICTS; attempt++) {
        const next = deepFreeze(runtimeStateSchema.parse(change(this.state)));
        const v = await this.compareAndSet(this.version, next);
        if (v >= 0) {
          this.version = v;
          await this.adopt(next);
          return next;
        }
        await this.reloadNow(); // someone else changed it first: apply the change to theirs
      }
      throw new StoreUnavailableError(`fleet state: ${MAX_CONFLICTS} conflicting changes in a row; try again`);
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** A publication from the fleet: reload unless it is our own change. */
  heard(message: { from?: unknown; version?: unknown }): void {
    if (message.from === this.o.node && message.version === this.version) return;
    void this.reload().catch((err: unknown) => this.o.log.warn({ err: (err as Error).message }, 'fleet state: reload failed'));
  }

  /** Reads the fleet's state; if it moved on, adopts it and tells the listener. */
  reload(): Promise<void> {
    const run = this.tail.then(() => this.reloadNow());
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** reload() for a caller already at the head of the queue. */
  private async reloadNow(): Promise<void> {
    {
      const [text, v] = await this.call(this.cas.doormanStateGet(2, this.key, this.versionKey));
      const version = v === null ? 0 : Number(v);
      if (version === this.version) return;
      const first = this.version < 0;
      const had = this.version;
      this.version = version;
      const next = text === null ? EMPTY_STATE : parseState(text, this.key);
      if (text === null && first) return; // nothing in Redis yet: keep the cache for seeding
      if (text === null && had > 0) {
        // Redis came back empty (restarted without persistence): what we hold is the fleet's last state.
        const mine = this.state;
        const seeded = await this.compareAndSet(0, mine);
        if (seeded >= 0) {
          this.version = seeded;
          this.o.log.warn({ bans: mine.bans.length }, 'fleet state: Redis had lost the state; written back from this node');
          return;
        }
        this.version = -1; // another node seeded it first: read theirs next time
        return;
      }
      await this.adopt(next);
      this.onRemoteChange?.(next);
    }
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * Writes `next` if the fleet's version is still `expected`, and announces
   * it; resolves with the new version, or -1 when someone changed it first.
   */
  private compareAndSet(expected: number, next: RuntimeState): Promise<number> {
    // The script puts the new version where @V@ stands.
    const message = JSON.stringify({ type: 'state', from: this.o.node, version: '@V@' }).replace('"@V@"', '@V@');
    return this.call(this.cas.doormanStateCas(2, this.key, this.versionKey, String(expected), JSON.stringify(next), this.channel, message));
  }

  private async adopt(next: RuntimeState): Promise<void> {
    this.state = next;
    await this.o.cache.update(() => next).catch((err: unknown) => this.o.log.warn({ err: (err as Error).message, file: this.o.cache.path }, 'fleet state: cache file not written'));
  }

  private async call<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      throw new StoreUnavailableError(`redis: ${(err as Error).message}`, { cause: err });
    }
  }
}
