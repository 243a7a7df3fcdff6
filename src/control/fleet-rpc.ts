/**
 * The questions and orders one node sends the others over the fleet bus,
 * each with a schema: what arrives from another node is input like any
 * other and is checked before it is used. `connections` (a node's first
 * `limit` connections matching a filter), `connection` (one by id) and
 * `kick` (by id, address or network).
 */
import { z } from 'zod';
import type { ConnectionFilter } from '../core/connections.js';
import type { FleetBus } from '../fleet/bus.js';

/** A node answers at most this many connections to one question: a page is at most 1,000, offset included up to 100 pages. */
const MAX_LIST = 100_000;
/** Texts as the admin API caps them: an id, a target and a service are short; a reason is one audit line. */
const MAX_TEXT = 500;

const text = z.string().min(1).max(MAX_TEXT);

export const listArgs = z.strictObject({
  filter: z.strictObject({ service: text.optional(), country: text.optional(), address: text.optional() }),
  limit: z.number().int().min(1).max(MAX_LIST),
});
export const connectionArgs = z.strictObject({ id: text });
export const kickArgs = z.strictObject({ target: text, service: text.optional(), reason: text });
/** The longest IPv6 text is 45 characters (mapped IPv4 included). */
export const whyArgs = z.strictObject({ address: z.string().min(1).max(64) });

export type ListArgs = z.infer<typeof listArgs>;
export type KickArgs = z.infer<typeof kickArgs>;
export type WhyArgs = z.infer<typeof whyArgs>;

/** What a node does for the others. */
export interface FleetHandlers {
  connections(filter: ConnectionFilter, limit: number): unknown;
  connection(id: string): unknown;
  kick(args: KickArgs): unknown;
}

/**
 * Answers the fleet's questions with `h`, each checked against its schema
 * first: a request that does not match is answered with an error naming
 * what was wrong (the asking node sees it as that node's answer), and
 * nothing runs.
 */
export function serveFleet(bus: FleetBus, h: FleetHandlers): void {
  bus.handle('connections', (raw) => {
    const a = checked(listArgs, raw, 'connections');
    return h.connections(a.filter, a.limit);
  });
  bus.handle('connection', (raw) => h.connection(checked(connectionArgs, raw, 'connection').id));
  bus.handle('kick', (raw) => h.kick(checked(kickArgs, raw, 'kick')));
}

/** Answers the fleet's `why` questions with `f`, each checked against its schema first. */
export function serveWhy(bus: FleetBus, f: (address: string) => unknown): void {
  bus.handle('why', (raw) => f(checked(whyArgs, raw, 'why').address));
}

function checked<T>(schema: z.ZodType<T>, raw: unknown, op: string): T {
  const r = schema.safeParse(raw);
  if (!r.success) throw new Error(`fleet ${op}: bad request (${r.error.issues.map((i) => `${i.path.join('.') || 'args'}: ${i.message}`).join('; ')})`);
  return r.data;
}
