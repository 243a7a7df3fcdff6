/** A value, or a promise of one: the memory store answers at once, a networked store (Redis) with promises. */
export type Awaitable<T> = T | Promise<T>;

/**
 * Applies `f` to a value that may or may not be a promise, staying synchronous
 * when it is not: the memory store's answers never wait for a microtask.
 */
export function then<T, R>(v: Awaitable<T>, f: (t: T) => R): Awaitable<R> {
  return v instanceof Promise ? v.then(f) : f(v);
}

/**
 * then() with a failure path: `fail` is called for a rejection (a
 * networked store's failure); a synchronous value never fails.
 */
export function settle<T, R>(v: Awaitable<T>, ok: (t: T) => Awaitable<R>, fail: (err: unknown) => Awaitable<R>): Awaitable<R> {
  return v instanceof Promise ? v.then(ok, fail) : ok(v);
}
