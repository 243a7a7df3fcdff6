/**
 * What the admin API's routes read from: the daemon's parts they need and
 * the observers the admin server owns. Built once by the server.
 */
import type { Logger } from 'pino';
import type { Clock } from '../../core/clock.js';
import type { ConnectionRegistry } from '../../core/connections.js';
import type { Control } from '../../control/control.js';
import type { WhyDesk } from '../../control/why.js';
import type { Gatekeeper } from '../../core/gate.js';
import type { HistorySampler } from '../../observability/history.js';
import type { DoorMetrics } from '../../observability/metrics.js';
import type { RefusalTracker } from '../../observability/refusal-tracker.js';

/** A configured service as /api/status shows it. */
export interface ServiceInfo {
  readonly name: string;
  readonly protocol: string;
  /** The guard proxy's bound addresses (host:port, the real port); empty without a proxy. */
  readonly listen: readonly string[];
  /** The front-ends that ask about this service's clients: guard proxy, anvil, postfix policy, dovecot, nginx. */
  readonly fronts: readonly string[];
}

export interface AdminContext {
  readonly control: Control;
  /** Why an address is refused, and how to lift it (every node's answer in a fleet). */
  readonly why: WhyDesk;
  readonly gate: Gatekeeper;
  readonly registry: ConnectionRegistry;
  /** The engine's clock: bans and peaks are stamped with it. */
  readonly clock: Clock;
  readonly log: Logger;
  readonly services: readonly ServiceInfo[];
  /** Front-ends that are no service's listener (HAProxy's SPOE agent), by configuration section, as /api/status shows them. */
  readonly frontEnds?: () => Readonly<Record<string, object>>;
  /** The nftables set writer's state (issue 20); null or absent: firewall.nft is off. */
  readonly firewall?: () => object | null;
  /** The CrowdSec bouncer as /api/status shows it; absent or null when it is off (issue 20). */
  readonly crowdsec?: () => Readonly<Record<string, unknown>> | null;
  readonly version: string;
  /** Epoch ms, engine clock. */
  readonly startedAt: number;
  readonly metrics: DoorMetrics;
  readonly refusals: RefusalTracker;
  readonly history: HistorySampler;
}
