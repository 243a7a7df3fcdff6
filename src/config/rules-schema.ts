/**
 * The rules part of the configuration: services with their limits and
 * country rules, exception networks and per-network overrides. Checks that
 * need more than one key (a service name that is no protocol and says none,
 * a network that does not parse, an override naming no such service) are
 * made in ../core/rules.ts when the rules are compiled, with the same
 * file/key/value/expected messages. The vocabulary (protocols, limit names)
 * and the shape compiled from are the core's; this file checks input
 * against them.
 */
import { z } from 'zod';
import { durationSchema, optionalDurationSchema } from './duration.js';
import { proxySchema, refusalTextsSchema, type RefusalTexts } from './proxy-schema.js';
import { COUNTRY_CODE_EXPECTED, normaliseCountry } from '../core/country-codes.js';
import { LIMIT_KEYS, PROTOCOLS, type LimitKey } from '../core/rules.js';


const MODES = ['enforce', 'dry-run'] as const;

const limit = z
  .number({ error: 'a whole number above 0, or null for no limit' })
  .int({ error: 'a whole number above 0, or null for no limit' })
  .min(1, { error: 'a whole number above 0, or null for no limit' })
  .nullable()
  .default(null);

export const limitsSchema = z.strictObject(
  Object.fromEntries(LIMIT_KEYS.map((k) => [k, limit])) as { [K in LimitKey]: typeof limit },
  { error: 'a mapping of limits' },
);

/** An assigned code (../core/country-codes.ts), in any case; kept in capitals. */
const countryCode = z.string({ error: COUNTRY_CODE_EXPECTED }).transform((s, ctx) => {
  const code = normaliseCountry(s);
  if (code !== null) return code;
  ctx.issues.push({ code: 'custom', message: COUNTRY_CODE_EXPECTED, input: s });
  return z.NEVER;
});

export const countryRuleSchema = z.strictObject(
  {
    allow: z.array(countryCode, { error: 'a list of country codes' }).min(1, { error: 'at least one country code' }).optional(),
    deny: z.array(countryCode, { error: 'a list of country codes' }).min(1, { error: 'at least one country code' }).optional(),
    mode: z.enum(MODES, { error: `one of: ${MODES.join(', ')}` }).optional(),
  },
  { error: 'a mapping with allow or deny (a list of country codes)' },
);

const durationKey = (def: string) => durationSchema(def, 1000);

const prefixLen = (max: number, def: number) =>
  z
    .number({ error: `a prefix length from 0 to ${max}` })
    .int({ error: `a prefix length from 0 to ${max}` })
    .min(0, { error: `a prefix length from 0 to ${max}` })
    .max(max, { error: `a prefix length from 0 to ${max} (an IPv${max === 32 ? 4 : 6} address has ${max} bits)` })
    .default(def);

export const serviceSchema = z.strictObject(
  {
    protocol: z.enum(PROTOCOLS, { error: `one of: ${PROTOCOLS.join(', ')}` }).optional(),
    mode: z.enum(MODES, { error: `one of: ${MODES.join(', ')}` }).default('enforce'),
    limits: limitsSchema.default(() => limitsSchema.parse({})),
    prefix: z
      .strictObject({ ipv4: prefixLen(32, 24), ipv6: prefixLen(128, 64) }, { error: 'a mapping with ipv4 and ipv6 prefix lengths' })
      .default({ ipv4: 24, ipv6: 64 }),
    countries: z
      .strictObject({ connect: countryRuleSchema.optional(), auth: countryRuleSchema.optional() }, { error: 'a mapping with connect and/or auth' })
      .default({}),
    /** How long an address is banned once it passes auth_failure_rate. */
    auth_failure_ban: durationKey('1h'),
    max_countries_per_login: z
      .strictObject(
        {
          countries: z.number({ error: 'a whole number above 0' }).int().min(1, { error: 'a whole number above 0' }),
          window: durationKey('24h'),
          action: z.enum(['report', 'refuse'], { error: 'one of: report, refuse' }).default('report'),
          exempt_logins: z.array(z.string(), { error: 'a list of login names' }).default([]),
        },
        { error: 'a mapping with countries, window, action and exempt_logins' },
      )
      .nullable()
      .default(null),
    /** A ban made again within `window` lasts `multiplier` times the last, up to max_ban; null: every ban lasts its base. */
    repeat_offenders: z
      .strictObject(
        {
          window: durationKey('7d'),
          multiplier: z.number({ error: 'a number from 1 to 100' }).min(1, { error: 'a number from 1 to 100' }).max(100, { error: 'a number from 1 to 100' }).default(4),
          max_ban: durationKey('7d'),
        },
        { error: 'a mapping with window, multiplier and max_ban' },
      )
      .nullable()
      .default(null),
    /** After a successful login from an address, its AUTH failures ban nobody for this long; null: off. */
    good_login: optionalDurationSchema(1000),
    /** A login that fails from more than `addresses` addresses within `window` is refused AUTH (but where it logged in well) until the window passes; null: off. */
    login_failures: z
      .strictObject(
        {
          addresses: z.number({ error: 'a whole number above 0' }).int({ error: 'a whole number above 0' }).min(1, { error: 'a whole number above 0' }),
          window: durationKey('1h'),
        },
        { error: 'a mapping with addresses and window' },
      )
      .nullable()
      .default(null),
    /** An unauthenticated address that names more than `recipients` distinct recipients within `window` to the policy service is banned for `ban`; null: off. */
    recipient_probing: z
      .strictObject(
        {
          recipients: z.number({ error: 'a whole number above 0' }).int({ error: 'a whole number above 0' }).min(1, { error: 'a whole number above 0' }),
          window: durationKey('1h'),
          ban: durationKey('1h'),
        },
        { error: 'a mapping with recipients, window and ban' },
      )
      .nullable()
      .default(null),
    /** The guard proxy: an address whose sessions end with nothing sent, more than `sessions` times within `window`, is banned for `ban`; null: off. */
    early_leavers: z
      .strictObject(
        {
          sessions: z.number({ error: 'a whole number from 1 to 60' }).int({ error: 'a whole number from 1 to 60' }).min(1, { error: 'a whole number from 1 to 60' }).max(60, { error: 'a whole number from 1 to 60' }),
          window: durationKey('10m'),
          ban: durationKey('1h'),
        },
        { error: 'a mapping with sessions, window and ban' },
      )
      .nullable()
      .default(null),
    /** Fleet mode, when Redis cannot be reached: count per host in memory (open) or refuse with a temporary failure (closed). */
    on_store_failure: z.enum(['open', 'closed'], { error: 'one of: open, closed' }).default('open'),
    /** What this service's refused clients are told, on every front-end that words a refusal (guard proxy, HAProxy's SPOE); proxy.texts, where set, win. */
    texts: refusalTextsSchema.default(() => refusalTextsSchema.parse({})),
    /** The guard proxy in front of this service's server; null: no proxy. */
    proxy: proxySchema.nullable().default(null),
  },
  { error: 'a mapping of service settings' },
);

export const overrideSchema = z.strictObject(
  {
    networks: z.array(z.string({ error: 'a network such as 192.0.2.0/24' }), { error: 'a list of networks' }).min(1, { error: 'at least one network' }),
    services: z.array(z.string(), { error: 'a list of service names' }).optional(),
    limits: limitsSchema.partial(),
    reason: z.string().optional(),
  },
  { error: 'a mapping with networks, limits and optionally services and reason' },
);

export const rulesSchemaShape = {
  services: z.record(z.string().regex(/^[A-Za-z0-9_.:\[\]-]+$/, { error: 'a service name of letters, digits and _.:-[]' }), serviceSchema, {
    error: 'a mapping of service names to their settings',
  }).default({}),
  exceptions: z.array(z.string({ error: 'a network such as 10.0.0.0/8' }), { error: 'a list of networks' }).default([]),
  overrides: z.array(overrideSchema, { error: 'a list of overrides' }).default([]),
};

export type ServiceConfig = z.output<typeof serviceSchema>;
export type OverrideConfig = z.output<typeof overrideSchema>;

/** A service's refusal words: its own `texts`, each overridden by its guard proxy's where that sets one. */
export function serviceTexts(s: { readonly texts: RefusalTexts; readonly proxy: { readonly texts: RefusalTexts } | null }): RefusalTexts {
  const out: Record<string, string | null> = { ...s.texts };
  if (s.proxy !== null) for (const [k, v] of Object.entries(s.proxy.texts)) if (v !== null) out[k] = v;
  return out as RefusalTexts;
}
