/** Benchmark settings from BENCH_* environment variables, checked against a range. */

/** `name` as a number from `min` to `max`, or `def` when unset; anything else stops the run, naming it. */
export function envNumber(name: string, def: number, min: number, max: number, env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < min || v > max) throw new Error(`${name}=${raw}: expected a number from ${min} to ${max}`);
  return v;
}

/** As envNumber, for whole numbers. */
export function envInt(name: string, def: number, min: number, max: number, env: NodeJS.ProcessEnv = process.env): number {
  const v = envNumber(name, def, min, max, env);
  if (!Number.isInteger(v)) throw new Error(`${name}=${env[name]}: expected an integer from ${min} to ${max}`);
  return v;
}
