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
 *                        implicit-TLS protocols, which only get a close. The
 *                        words are the guard proxy's: the service's own
 *                        (services.NAME.proxy.texts) where it has them
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
import type { Refusal } from '../core/decision.js';
import type { Screening } from '../core/gate.js';
import type { Protocol } from '../core/rules.js';
import { refusalKindOf, refusalLine, refusalText, type RefusalKind, type RefusalTexts } from './refusals.js';
import { encodeAckPayload, spopArg, type SpopAction, type SpopMessage } from './spop-messages.js';
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

/** An ACK's payload (encodeAckPayload) and whether it refuses: a client is answered with the bytes, made once where they can be. */
export interface SpoeAnswer {
  readonly payload: Buffer;
  readonly refuse: boolean;
}

function answer(actions: readonly SpopAction[], refuse: boolean): SpoeAnswer {
  return { payload: encodeAckPayload(actions), refuse };
}

/** Entries kept per cache: services, overrides and countries are few; the caps only guard against surprises. */
const CACHE_MAX = 1024;

/**
 * Turns screenings into ACK payloads. An allowed client's payload depends
 * only on its country, its protocol, its limit and its service's own texts,
 * so it is encoded once per such combination and reused; a refusal's carries
 * its retry-after (a ban's time left), so it is encoded each time, from
 * action objects made once.
 */
export class SpoeVerdicts {
  private readonly hostname: string;
  /** Services with words of their own (services.NAME.proxy.texts); the rest get the built-in ones. */
  private readonly texts: ReadonlyMap<string, RefusalTexts>;
  /** `verdict` alone: a message that could not be judged, or an allowed client with nothing more to say. */
  static readonly ALLOW: SpoeAnswer = answer([str(SPOE_VAR.verdict, 'allow')], false);
  /** `verdict` alone, refusing: what still fits a tiny negotiated frame. */
  static readonly REFUSE_ONLY: SpoeAnswer = answer([str(SPOE_VAR.verdict, 'refuse')], true);
  private static readonly VERDICT_REFUSE = str(SPOE_VAR.verdict, 'refuse');
  private static readonly VERDICT_ALLOW = str(SPOE_VAR.verdict, 'allow');
  private readonly allowed = new Map<string, SpoeAnswer>();
  private readonly lines = new Map<string, SpopAction | null>();
  private readonly strings = new Map<string, SpopAction>();

  /** `texts`: the refusal texts of the services that have their own (fixed until a restart, as the proxies are). */
  constructor(hostname: string, texts: ReadonlyMap<string, RefusalTexts> = new Map()) {
    this.hostname = hostname;
    this.texts = texts;
  }

  /** The answer for one screening of a client of `service`, which speaks `protocol`. */
  answer(s: Screening, protocol: Protocol, service = ''): SpoeAnswer {
    const d = s.decision;
    const r = d.refusal;
    if (d.action === 'refuse' && r !== null) return answer(this.refusal(d.country, r, protocol, service), true);
    if (d.country === null && s.connLimit === null) return SpoeVerdicts.ALLOW;
    // A service with texts of its own has lines of its own; the others share theirs.
    const own = s.connLimit !== null && this.texts.has(service) ? service : '';
    const key = `${d.country ?? ''}|${s.connLimit === null ? '' : `${protocol}|${s.connLimit}|${own}`}`;
    let a = this.allowed.get(key);
    if (a === undefined) {
      const actions: SpopAction[] = [SpoeVerdicts.VERDICT_ALLOW];
      if (d.country !== null) actions.push(this.string(SPOE_VAR.country, d.country));
      if (s.connLimit !== null) {
        actions.push(int(SPOE_VAR.connLimit, s.connLimit));
        const text = this.line(protocol, own, 'too_many', true, s.connLimit, SPOE_VAR.connText);
        if (text !== null) actions.push(text);
      }
      a = answer(actions, false);
      if (this.allowed.size < CACHE_MAX) this.allowed.set(key, a);
    }
    return a;
  }

  /** A refusal's actions: the verdict, the line (none for implicit TLS), the rule, the retry-after, the country. */
  refusal(country: string | null, r: Refusal, protocol: Protocol, service = ''): SpopAction[] {
    const out: SpopAction[] = [SpoeVerdicts.VERDICT_REFUSE];
    const text = this.line(protocol, this.texts.has(service) ? service : '', refusalKindOf(r.cause), r.temporary, r.limit ?? null);
    if (text !== null) out.push(text);
    out.push(this.string(SPOE_VAR.rule, r.rule), int(SPOE_VAR.retryAfter, r.retryAfterSec));
    if (country !== null) out.push(this.string(SPOE_VAR.country, country));
    return out;
  }

  /**
   * The refusal line of a kind, as an action setting `name`, in the words of
   * `service` ('' or a service without texts of its own: the built-in ones);
   * null for implicit TLS (only a close). Cached.
   */
  private line(protocol: Protocol, service: string, kind: RefusalKind, temporary: boolean, limit: number | null, name: string = SPOE_VAR.text): SpopAction | null {
    const key = `${name}|${protocol}|${service}|${kind}|${temporary ? 't' : 'p'}|${limit ?? ''}`;
    let a = this.lines.get(key);
    if (a === undefined) {
      const bytes = refusalLine(protocol, temporary, refusalText(protocol, kind, this.texts.get(service) ?? null, limit), this.hostname);
      a = bytes === null ? null : str(name, bytes.toString('latin1').replace(/\r\n$/, ''));
      if (this.lines.size < CACHE_MAX) this.lines.set(key, a);
    }
    return a;
  }

  /** A string variable's action, cached (countries and rules are few). */
  private string(name: string, value: string): SpopAction {
    const key = `${name}=${value}`;
    let a = this.strings.get(key);
    if (a === undefined) {
      a = str(name, value);
      if (this.strings.size < CACHE_MAX) this.strings.set(key, a);
    }
    return a;
  }
}
