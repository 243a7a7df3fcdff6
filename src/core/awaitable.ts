import type { Awaitable } from '../store/types.js';

/**
 * Applies `f` to a value that may or may not be a promise, staying synchronous
 * when it is not: the memory store's answers never wait for a microtask.
 */
export function then<T, R>(v: Awaitable<T>, f: (t: T) => R): Awaitable<R> {
  return v instanceof Promise ? v.then(f) : f(v);
}
