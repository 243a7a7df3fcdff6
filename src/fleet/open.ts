/**
 * Fleet mode's shared state, opened in one place: the bans and country rules
 * every node keeps in Redis (with this host's state file as its cache), the
 * audit log every node appends to, and the bus on which nodes ask each other
 * for connections and kicks and hear each other's changes.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/load.js';
import type { CloseStack } from '../close-stack.js';
import type { AuditSink } from '../state/audit-log.js';
import type { RuntimeState, RuntimeStateStore, StateStore } from '../state/runtime-state.js';
import type { RedisClient } from '../store/redis-client.js';
import { FleetAudit } from './audit.js';
import { FleetBus } from './bus.js';
import { FleetState } from './state.js';

/** How long the bus's second connection (pub/sub) may take to come up at start. */
const SUBSCRIBER_CONNECT_MS = 3000;

export interface OpenedFleet {
  readonly state: RuntimeStateStore;
  readonly audit: AuditSink;
  readonly bus: FleetBus;
  /** Starts hearing the other nodes; each change of the fleet's state is handed to `apply`. */
  start(apply: (state: RuntimeState) => void): Promise<void>;
}

export async function openFleet(o: {
  readonly config: Config;
  readonly client: RedisClient;
  readonly node: string;
  /** This host's state file: the fleet state's cache. */
  readonly file: StateStore;
  /** This host's audit log: every entry is also written there. */
  readonly audit: AuditSink;
  readonly log: Logger;
  readonly closing: CloseStack;
}): Promise<OpenedFleet> {
  const { config, client, node, log, closing } = o;
  const prefix = config.store.redis.prefix;
  const state = await FleetState.open({ client, prefix, node, cache: o.file, log });
  closing.push('fleet state', () => state.close());
  const audit = new FleetAudit(o.audit, client, prefix, node, log);
  const subscriber = client.duplicate();
  subscriber.on('error', () => {});
  const { connectWithin } = await import('../store/redis-client.js');
  await connectWithin(subscriber, SUBSCRIBER_CONNECT_MS);
  const bus = new FleetBus({ client, subscriber, prefix, node, leaseMs: config.store.lease, log });
  closing.push('fleet bus', () => bus.stop());
  return {
    state,
    audit,
    bus,
    async start(apply) {
      state.onRemoteChange = (s) => {
        apply(s);
        log.info({ bans: s.bans.length, country_rules: Object.keys(s.countries).length }, 'fleet state: change from another node in force');
      };
      bus.listen(state.channel, (m) => state.heard(m));
      await bus.start([state.channel]);
      // Subscribed after a reconnection: changes may have been missed meanwhile.
      client.on('ready', () => void state.reload().catch(() => undefined));
    },
  };
}
