/**
 * Pure: how a refusal (or a ban) is lifted, and whether it is still in
 * force, worked out from what refused and what holds now. One command when
 * one command lifts it, and words for the rest:
 *
 *   a local ban (operator, automatic)   doorman unban TARGET
 *   CrowdSec's ban                      cscli decisions delete --ip ADDR | --range CIDR
 *                                       (Doorman follows CrowdSec: `doorman unban` refuses it)
 *   a country rule                      doorman unblock CC --service S --phase P
 *   a limit, the store                  none: it lifts by itself after the retry-after;
 *                                       exempting the address is `exceptions:` and `doorman reload`
 *   countries per login                 none: `exempt_logins` and `doorman reload`
 *   a login guessed from many addresses none: it lifts by itself after its window
 *
 * Every command named here exists (src/cli/commands/, cscli 1.4's
 * `decisions delete`); none is invented for what has no command.
 */
import { layerOf, type Ban, type BanLayer } from '../core/bans.js';
import type { Refusal } from '../core/decision.js';
import type { RulePhase, Rules } from '../core/rules.js';

/** How to lift it: the command, when one does it; in words, always. */
export interface Lift {
  readonly command: string | null;
  readonly how: string;
}

/** What holds now, as the node that recorded the refusal sees it. */
export interface LiftContext {
  readonly rules: Rules;
  /** The exception network holding the address now, if any: then nothing refuses it. */
  readonly exception: string | null;
  /** The ban held now on exactly `target` in `layer`, or null. */
  banOf(target: string, layer: BanLayer): Ban | null;
  readonly now: number;
}

/** A refusal as the record keeps it, with what the lift needs besides the refusal. */
export interface RefusalSeen {
  readonly refusal: Refusal;
  readonly address: string;
  readonly service: string;
  readonly country: string | null;
  /** Epoch ms of the latest refusal of the run. */
  readonly last: number;
}

/** Whether it still refuses, and until when (epoch ms; null: until someone changes it). */
export interface Standing {
  readonly inForce: boolean;
  readonly until: number | null;
  readonly lift: Lift;
}

/** Characters a shell leaves alone; anything else is quoted. */
const PLAIN = /^[A-Za-z0-9_.:/@%+=,-]+$/;

/** A word of a command line, quoted for a POSIX shell when it needs to be. */
export function shellWord(s: string): string {
  return PLAIN.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** How a ban is lifted: `doorman unban` for the local layer, CrowdSec's own command for its. */
export function banLift(b: Ban): Lift {
  if (layerOf(b.origin) === 'crowdsec') {
    const flag = b.target.includes('/') ? '--range' : '--ip';
    return {
      command: `cscli decisions delete ${flag} ${shellWord(b.target)}`,
      how: `CrowdSec's decision (${b.reason}): Doorman follows CrowdSec, so it is lifted there, on the host of CrowdSec's Local API, and Doorman drops it at its next poll; \`doorman unban\` does not lift it`,
    };
  }
  const who = b.origin === 'auto' ? "Doorman's automatic ban" : "an operator's ban";
  const strike = b.strike > 1 ? `, strike ${b.strike} (a repeat offender's longer ban)` : '';
  return { command: `doorman unban ${shellWord(b.target)}`, how: `${who}${strike}; it ends by itself at ${iso(b.until)}` };
}

/** "services.imap.countries.connect" → its service and phase; null for any other key. */
export function countryRuleOf(key: string): { service: string; phase: RulePhase } | null {
  const m = /^services\.(.+)\.countries\.(connect|auth)$/.exec(key);
  return m === null ? null : { service: m[1] as string, phase: m[2] as RulePhase };
}

/** Whether `r` still refuses and how it is lifted, from what holds now. */
export function standing(r: RefusalSeen, ctx: LiftContext): Standing {
  const f = r.refusal;
  // An exception network is judged before anything else, bans included (core/decision.ts).
  if (ctx.exception !== null) return { inForce: false, until: null, lift: { command: null, how: `${r.address} is now in the exception network ${ctx.exception}: nothing refuses it` } };
  switch (f.cause) {
    case 'ban': {
      const b = f.ban;
      if (b === undefined) return { inForce: false, until: null, lift: { command: null, how: 'a ban no longer known' } };
      const held = ctx.banOf(b.target, layerOf(b.origin));
      if (held === null || held.until <= ctx.now) return { inForce: false, until: b.until, lift: { command: null, how: `the ban on ${b.target} is no longer in force (lifted or ended)` } };
      return { inForce: true, until: held.until, lift: banLift(held) };
    }
    case 'country': {
      const at = countryRuleOf(f.rule);
      const cc = r.country;
      if (at === null || cc === null) return { inForce: false, until: null, lift: { command: null, how: `no country rule to lift (${f.rule})` } };
      const rule = ctx.rules.services.get(at.service)?.countries[at.phase] ?? null;
      const blocks = rule !== null && !rule.dryRun && (rule.kind === 'allow' ? !rule.codes.has(cc) : rule.codes.has(cc));
      if (!blocks) return { inForce: false, until: null, lift: { command: null, how: `${cc} is no longer refused for ${at.service} at ${at.phase}` } };
      const what = rule.kind === 'allow' ? `is not in the allow list of ${f.rule}` : `is in the deny list of ${f.rule}`;
      return {
        inForce: true,
        until: null,
        lift: {
          command: `doorman unblock ${cc} --service ${shellWord(at.service)} --phase ${at.phase}`,
          how: `${cc} ${what}; unblocking puts a run-time rule in its place, kept in the state file`,
        },
      };
    }
    case 'countries_per_login': {
      const login = f.key ?? '';
      const travel = ctx.rules.services.get(r.service)?.maxCountriesPerLogin ?? null;
      const inForce = travel !== null && travel.refuse && !travel.exempt.has(login);
      const how = inForce
        ? `the login is refused from a new country while it has been used from more than ${f.limit ?? travel.countries} countries in ${Math.round(travel.windowMs / 3_600_000)} h; to exempt it, add ${JSON.stringify(login)} to services.${r.service}.max_countries_per_login.exempt_logins in the configuration and run \`doorman reload\``
        : `the login is no longer refused for this (the rule is off, reports only, or exempts it)`;
      return { inForce, until: null, lift: { command: null, how } };
    }
    case 'login_failures': {
      // A login failed from many addresses: refused everywhere but where it logged in well, until the window passes.
      const until = r.last + f.retryAfterSec * 1000;
      return {
        inForce: until > ctx.now,
        until,
        lift: {
          command: null,
          how: `the login ${JSON.stringify(f.key ?? '')} failed from more than ${f.limit ?? '?'} addresses: it is refused at any address it has not logged in from well, and lifts by itself once the failures age out of the window (retry after ${f.retryAfterSec} s, at ${iso(until)}); to exempt ${r.address}, add it to exceptions: in the configuration and run \`doorman reload\``,
        },
      };
    }
    case 'store': {
      const until = r.last + f.retryAfterSec * 1000;
      return {
        inForce: until > ctx.now,
        until,
        lift: { command: null, how: `the shared counter store (Redis) did not answer and ${f.rule} is closed: clients are refused until it answers again (retry after ${f.retryAfterSec} s); on_store_failure: open admits them meanwhile` },
      };
    }
    default: {
      // A limit: concurrency or a rate. It lifts by itself; exemption is the configuration's.
      const until = r.last + f.retryAfterSec * 1000;
      const who = f.cause === 'connections_per_prefix' && f.key !== undefined ? f.key : r.address;
      return {
        inForce: until > ctx.now,
        until,
        lift: {
          command: null,
          how: `it lifts by itself: retry after ${f.retryAfterSec} s (at ${iso(until)}), once the count is under the limit; to exempt ${who}, add it to exceptions: in the configuration (or give it higher limits in overrides:) and run \`doorman reload\``,
        },
      };
    }
  }
}
