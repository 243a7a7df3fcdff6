/**
 * The events the engine keeps a rate of, per (service, client) key. The index
 * of each is its column in the stores' rate tables; append, never reorder.
 * `tlstr` is Postfix 3.12's: TLS trace files its daemons may write, one
 * global rate under the ident `any:any`.
 */
export const RATE_METRICS = ['conn', 'mail', 'rcpt', 'newtls', 'auth', 'authfail', 'tlstr'] as const;
export type RateMetric = (typeof RATE_METRICS)[number];
export const METRIC_COUNT = RATE_METRICS.length;

export const METRIC_INDEX: { readonly [M in RateMetric]: number } = Object.freeze(
  Object.fromEntries(RATE_METRICS.map((m, i) => [m, i])) as { [M in RateMetric]: number },
);

/**
 * Keys beginning with this are the gate's bookkeeping, not clients: the
 * AUTH failures seen per (client, login, password hash), so a repeated wrong
 * password counts once, and per (client, login). They are counted like any
 * key but are never a peak and never listed by a store's top(): /api/clients
 * lists clients. No service name or client address begins with it.
 */
export const BOOKKEEPING_PREFIX = '~';

/** Counts and rates of one key at one instant. */
export interface KeySnapshot {
  /** Concurrent connections now. */
  readonly count: number;
  /** Events per rate time unit, one per metric. */
  readonly rates: { readonly [M in RateMetric]: number };
}

export const EMPTY_SNAPSHOT: KeySnapshot = Object.freeze({
  count: 0,
  rates: Object.freeze({ conn: 0, mail: 0, rcpt: 0, newtls: 0, auth: 0, authfail: 0, tlstr: 0 }),
});
