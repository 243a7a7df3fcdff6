/**
 * JSON-schema pieces shared by the admin routes. Every field carries a
 * `description` in words: the schema error formatter (./errors.ts) quotes it
 * as what was expected. Caps are named here with their reasons.
 */
import { parseDuration } from '../../config/duration.js';
import { HttpError } from '../../errors.js';

/** The longest IPv6 CIDR text is 43 characters; connection ids are far shorter. */
const TARGET_MAX = 64;
/** The state file keeps reasons up to 1000 characters. */
const REASON_MAX = 1000;
/** Service names are config keys; nobody names one longer. */
const NAME_MAX = 64;

export const target = { type: 'string', minLength: 1, maxLength: TARGET_MAX, description: 'an address, a CIDR network or a connection id' } as const;
export const network = { type: 'string', minLength: 1, maxLength: TARGET_MAX, description: 'an address or a CIDR network' } as const;
export const address = { type: 'string', minLength: 1, maxLength: TARGET_MAX, description: 'an IP address' } as const;
export const reason = { type: 'string', minLength: 1, maxLength: REASON_MAX, description: `a reason in words (1 to ${REASON_MAX} characters)` } as const;
export const service = { type: 'string', minLength: 1, maxLength: NAME_MAX, description: 'a service name from the configuration' } as const;
export const dryRun = { type: 'boolean', description: 'true or false' } as const;
export const country = { type: 'string', pattern: '^[A-Za-z]{2}$', description: 'a two-letter country code such as DE' } as const;
export const phase = { type: 'string', enum: ['connect', 'auth'], description: 'connect or auth' } as const;
/** Its text is checked by durationMs(): a pattern inside anyOf would meet ajv's type coercion. */
export const duration = { type: ['string', 'number'], maxLength: 32, description: 'a duration such as 90s, 10m, 1h, 1d, or a number of seconds' } as const;

export function paging(max: number, def: number) {
  return {
    offset: { type: 'integer', minimum: 0, default: 0, description: 'an integer from 0' },
    limit: { type: 'integer', minimum: 1, maximum: max, default: def, description: `an integer from 1 to ${max}` },
  } as const;
}

/** An object schema that names its fields and refuses any other. */
export function strict(properties: Record<string, unknown>, required: readonly string[] = []) {
  return { type: 'object', properties, required, additionalProperties: false } as const;
}

/** Milliseconds of a duration field that passed the schema. */
export function durationMs(v: string | number, field: string): number {
  const ms = parseDuration(v);
  if (ms === null) throw new HttpError('DOORMAN_ERR_BAD_REQUEST', `${field}: got ${JSON.stringify(v)}, expected ${duration.description}`);
  return ms;
}
