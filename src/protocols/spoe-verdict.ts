/**
 * What Doorman reads from HAProxy's spoe-message and the variables it sets
 * in reply: the SPOE half of HAProxy's conversation that the shipped
 * configuration (contrib/haproxy/) is written against. No I/O; the framing
 * is ./spop.ts's, the connection ./spop-agent.ts's.
 *
 * The message (`args src=src service=fe_name dst_port=dst_port`, sent
 * `on-client-session`):
 *
 *   src       IPV4 or IPV6 (or a STRING holding an address): the client
 *   service   STRING: a Doorman service name; the shipped config sends the
 *             frontend's name, so frontends are named like services
 *   dst_port  INT64 (any integer type), optional: where the client connected
 *
 * The ACK, all in scope `sess` (HAProxy prefixes `<var-prefix>.`):
 *
 *   verdict      STRING  "allow" or "refuse"
 *   text         STRING  refused: the line the client must read, in its
 *                        protocol's words (421 4.7.0 …, -ERR [SYS/TEMP] …,
 *                        * BYE [UNAVAILABLE] …), without CRLF; unset for the
 *                        implicit-TLS protocols, which only get a close
 *   rule         STRING  refused: the rule that refused (a configuration key, "bans")
 *   retry_after  INT32   refused: seconds before trying again (0: do not)
 *   country      STRING  the client's country when known (ISO code)
 *   conn_limit   INT32   allowed, and a per-address concurrency limit is
 *                        enforced for this client: the limit, for HAProxy's
 *                        stick table to count against (SPOE has no event
 *                        when a session ends, so Doorman cannot count it)
 *   conn_text    STRING  with conn_limit: the refusal line for a client over it
 *
 * A variable not listed is never set; every session starts with none, so
 * nothing is unset. A message without a usable src or service is answered
 * "allow" (malformed): HAProxy's own failure mode is to let the session
 * through, and a refusal from a misconfigured message would refuse everyone.
 */
import type { Screening } from '../core/gate.js';
import type { Protocol } from '../core/rules.js';
import { refusalKindOf, refusalLine, refusalText, type RefusalKind } from './refusals.js';
import { spopArg, type SpopAction, type SpopMessage } from './spop-messages.js';
import { spopInteger, type SpopValue } from './spop.js';

/** The argument names the shipped spoe-message uses. */
export const SPOE_ARG = { src: 'src', service: 'service', dstPort: 'dst_port' } as const;

/** The variable names Doorman sets (bare: HAProxy adds `sess.<var-prefix>.`). */
export const SPOE_VAR = {
  verdict: 'verdict',
  text: 'text',
  rule: 'rule',
  retryAfter: 'retry_after',
  country: 'country',
  connLimit: 'conn_limit',
  connText: 'conn_text',
} as const;

/** A service name as the configuration allows one, and not longer than any sane frontend name. */
const SERVICE_RE = /^[A-Za-z0-9_.:[\]-]{1,128}$/;
const INT32_MAX = 2 ** 31 - 1;

export interface SpoeRequest {
  /** The client's address as HAProxy wrote it (parsed once, by the gatekeeper). */
  readonly address: string;
  readonly service: string;
  readonly dstPort: number | null;
}

/** A request, or why the message cannot be one. */
export type SpoeRead = { readonly ok: true; readonly request: SpoeRequest } | { readonly ok: false; readonly why: string };

function describe(v: SpopValue | undefined): string {
  return v === undefined ? 'missing' : `of type ${v.type}`;
}

/** Reads the client's facts from Doorman's message; never throws. */
export function readSpoeRequest(m: SpopMessage): SpoeRead {
  const src = spopArg(m, SPOE_ARG.src);
  if (src === undefined || (src.type !== 'ipv4' && src.type !== 'ipv6' && src.type !== 'string')) {
    return { ok: false, why: `argument ${SPOE_ARG.src} is ${describe(src)}, not an address` };
  }
  const service = spopArg(m, SPOE_ARG.service);
  if (service === undefined || service.type !== 'string' || !SERVICE_RE.test(service.value)) {
    const what = service?.type === 'string' ? `${JSON.stringify(service.value.slice(0, 64))}, not a service name` : `${describe(service)}, not a service name`;
    return { ok: false, why: `argument ${SPOE_ARG.service} is ${what}` };
  }
  const port = spopInteger(spopArg(m, SPOE_ARG.dstPort));
  return { ok: true, request: { address: src.value, service: service.value, dstPort: port !== null && port >= 0 && port <= 65535 ? port : null } };
}

function str(name: string, value: string): SpopAction {
  return { action: 'set-var', scope: 'sess', name, value: { type: 'string', value } };
}

function int(name: string, value: number): SpopAction {
  return { action: 'set-var', scope: 'sess', name, value: { type: 'int32', value: Math.max(0, Math.min(INT32_MAX, Math.round(value))) } };
}

/**
 * Turns screenings into ACK actions. Every action object that does not
 * depend on the client is made once and reused: the verdicts, the countries,
 * the refusal lines per (protocol, kind, permanence, limit).
 */
export class SpoeVerdicts {
  private readonly hostname: string;
  /** The ACK of a message that could not be judged, or of an allowed client with nothing more to say. */
  static readonly ALLOW: readonly SpopAction[] = Object.freeze([str(SPOE_VAR.verdict, 'allow')]);
  private static readonly REFUSE = str(SPOE_VAR.verdict, 'refuse');
  private static readonly VERDICT_ALLOW = SpoeVerdicts.ALLOW[0] as SpopAction;
  private readonly countries = new Map<string, SpopAction>();
  private readonly lines = new Map<string, SpopAction | null>();
  private readonly limits = new Map<string, readonly SpopAction[]>();
  private readonly rules = new Map<string, SpopAction>();

  constructor(hostname: string) {
    this.hostname = hostname;
  }

  /** The actions for one screening of a client of a service speaking `protocol`. */
  actions(s: Screening, protocol: Protocol): readonly SpopAction[] {
    const d = s.decision;
    const country = d.country === null ? null : this.country(d.country);
    const r = d.refusal;
    if (d.action === 'refuse' && r !== null) {
      const out: SpopAction[] = [SpoeVerdicts.REFUSE];
      const text = this.line(protocol, refusalKindOf(r.rule), r.temporary, r.limit ?? null);
      if (text !== null) out.push(text);
      out.push(this.rule(r.rule), int(SPOE_VAR.retryAfter, r.retryAfterSec));
      if (country !== null) out.push(country);
      return out;
    }
    const limit = s.connLimit === null ? null : this.limit(protocol, s.connLimit);
    if (country === null && limit === null) return SpoeVerdicts.ALLOW;
    const out: SpopAction[] = [SpoeVerdicts.VERDICT_ALLOW];
    if (country !== null) out.push(country);
    if (limit !== null) out.push(...limit);
    return out;
  }

  /** The refusal line of a kind, as a `text` action; null for implicit TLS (only a close). Cached. */
  line(protocol: Protocol, kind: RefusalKind, temporary: boolean, limit: number | null, name: string = SPOE_VAR.text): SpopAction | null {
    const key = `${name}|${protocol}|${kind}|${temporary ? 't' : 'p'}|${limit ?? ''}`;
    let a = this.lines.get(key);
    if (a === undefined) {
      const bytes = refusalLine(protocol, temporary, refusalText(protocol, kind, null, limit), this.hostname);
      a = bytes === null ? null : str(name, bytes.toString('latin1').replace(/\r\n$/, ''));
      // Limits are few (services, overrides); the cap only guards against surprises.
      if (this.lines.size < 1024) this.lines.set(key, a);
    }
    return a;
  }

  private limit(protocol: Protocol, limit: number): readonly SpopAction[] {
    const key = `${protocol}|${limit}`;
    let a = this.limits.get(key);
    if (a === undefined) {
      const text = this.line(protocol, 'too_many', true, limit, SPOE_VAR.connText);
      a = text === null ? [int(SPOE_VAR.connLimit, limit)] : [int(SPOE_VAR.connLimit, limit), text];
      if (this.limits.size < 1024) this.limits.set(key, a);
    }
    return a;
  }

  private country(code: string): SpopAction {
    let a = this.countries.get(code);
    if (a === undefined) {
      a = str(SPOE_VAR.country, code);
      // Country codes are a closed set of about 250.
      if (this.countries.size < 512) this.countries.set(code, a);
    }
    return a;
  }

  private rule(rule: string): SpopAction {
    let a = this.rules.get(rule);
    if (a === undefined) {
      a = str(SPOE_VAR.rule, rule);
      if (this.rules.size < 1024) this.rules.set(rule, a);
    }
    return a;
  }
}
