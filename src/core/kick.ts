/**
 * Kick: close live proxied connections — one by id, or all from an address
 * or network — optionally banning the address or network first, so the
 * client cannot simply reconnect. These are the plain functions the admin
 * API and the CLI call; nothing here touches a socket.
 */
import type { Ban, BanList } from './bans.js';
import type { ConnectionRegistry, ConnectionView } from './connections.js';
import { parseNetwork } from './networks.js';
import { DoormanError } from '../errors.js';

export interface KickOptions {
  /** Ban the target (for an id: the connection's address) for this long first. */
  readonly banMs?: number;
  /** Why: for the log, the audit trail and the ban. */
  readonly reason?: string;
  /** Only connections of this service. */
  readonly service?: string;
}

export interface KickResult {
  readonly kicked: readonly ConnectionView[];
  readonly ban: Ban | null;
}

/** A target that is neither a known connection id nor an address or network. */
export class KickTargetError extends DoormanError {}

/** `target`: a connection id, an address, or a CIDR network. */
export function kick(registry: ConnectionRegistry, bans: BanList, target: string, opts: KickOptions, now: number): KickResult {
  const reason = opts.reason ?? 'kicked by the administrator';
  const one = registry.get(target);
  if (one !== null) {
    const ban = opts.banMs === undefined ? null : bans.add(one.client.address, opts.banMs, reason, now);
    registry.kick(target, reason);
    return { kicked: [one], ban };
  }
  try {
    parseNetwork(target);
  } catch {
    throw new KickTargetError('DOORMAN_ERR_KICK_TARGET', `"${target.slice(0, 64)}" is no live connection id, address or network`);
  }
  const ban = opts.banMs === undefined ? null : bans.add(target, opts.banMs, reason, now);
  const filter = opts.service === undefined ? { address: target } : { address: target, service: opts.service };
  return { kicked: registry.kickWhere(filter, reason), ban };
}
