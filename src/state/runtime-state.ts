/**
 * What operators change at run time — bans and country rules per service and
 * phase — kept in one JSON state file. A change is written (atomically, see
 * ./atomic-file.ts) before it takes effect and before the call that made it
 * returns, so it survives `kill -9` and a power cut; the file is read at
 * start. Changes are serialized: each write holds the state after every
 * earlier change. If a write fails, the change is refused and the state in
 * memory and on disk stays as it was.
 *
 * A file that does not parse or validate stops Doorman at start with the
 * file and the key named, rather than starting without the operator's bans.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { countryRuleSchema } from '../config/rules-schema.js';
import { ConfigError } from '../errors.js';
import { deepFreeze } from '../config/load.js';
import { writeFileAtomic } from './atomic-file.js';

const banSchema = z.strictObject({
  target: z.string().min(1).max(64),
  until: z.number().int().min(0),
  reason: z.string().max(1000),
  created_at: z.number().int().min(0),
  /** Absent in files written before 0.2: operator. CrowdSec's bans are CrowdSec's to keep, never here. */
  origin: z.enum(['operator', 'auto']).optional(),
  /** Absent: 1. */
  strike: z.number().int().min(1).max(1000).optional(),
});

const phasesSchema = z.strictObject({
  /** null: the rule from the configuration file was lifted at run time. */
  connect: countryRuleSchema.nullable().optional(),
  auth: countryRuleSchema.nullable().optional(),
});

const offenceSchema = z.strictObject({
  target: z.string().min(1).max(64),
  strike: z.number().int().min(1).max(1000),
  at: z.number().int().min(0),
});

export const runtimeStateSchema = z.strictObject({
  version: z.literal(1),
  bans: z.array(banSchema),
  /** Repeat offenders: each target's last automatic ban (absent in files written before 0.2). */
  offenders: z.array(offenceSchema).max(100_000).optional(),
  /** Per service: country rules set at run time, in place of the configuration's. */
  countries: z.record(z.string(), phasesSchema),
});

export type RuntimeState = z.output<typeof runtimeStateSchema>;
export type PersistedBan = z.output<typeof banSchema>;

export const EMPTY_STATE: RuntimeState = deepFreeze({ version: 1, bans: [], countries: {} });

/** Where run-time state lives: this file (one host), or Redis for a fleet (../fleet/state.ts). */
export interface RuntimeStateStore {
  /** Where, for logs. */
  readonly path: string;
  readonly current: RuntimeState;
  /** Applies `change` after every earlier one; resolves once it is stored, rejects (nothing changed) if not. */
  update(change: (s: RuntimeState) => RuntimeState): Promise<RuntimeState>;
}

export class StateStore implements RuntimeStateStore {
  readonly path: string;
  private state: RuntimeState;
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(path: string, state: RuntimeState) {
    this.path = path;
    this.state = state;
  }

  /** Reads the file; a missing file is an empty state. A file that cannot be read throws the system error. */
  static async open(path: string): Promise<StateStore> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new StateStore(path, EMPTY_STATE);
      // Thrown as it is: the caller (../state/open-paths.ts) names the configuration key.
      throw err;
    }
    return new StateStore(path, parseState(text, path));
  }

  get current(): RuntimeState {
    return this.state;
  }

  /**
   * Applies `change` to the state after every earlier update, writes the
   * result and only then makes it current. Resolves with the new state;
   * rejects (state unchanged) when `change` throws or the write fails.
   */
  update(change: (s: RuntimeState) => RuntimeState): Promise<RuntimeState> {
    const run = this.tail.then(async () => {
      const next = deepFreeze(runtimeStateSchema.parse(change(this.state)));
      await writeFileAtomic(this.path, `${JSON.stringify(next, null, 1)}\n`);
      this.state = next;
      return next;
    });
    this.tail = run.catch(() => undefined);
    return run;
  }
}

export function parseState(text: string, file: string): RuntimeState {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError([{ file, key: '', value: undefined, expected: `a JSON state file written by Doorman (${(err as Error).message})` }]);
  }
  const r = runtimeStateSchema.safeParse(data);
  if (!r.success) {
    throw new ConfigError(r.error.issues.map((i) => ({ file, key: i.path.map(String).join('.'), value: undefined, expected: i.message })));
  }
  return deepFreeze(r.data);
}
