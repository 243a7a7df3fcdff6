/**
 * The answer of CrowdSec's Local API to a bouncer's
 * `GET /v1/decisions/stream` (crowdsecurity/crowdsec
 * pkg/models/localapi_swagger.yaml, DecisionsStreamResponse; the handler
 * pkg/apiserver/controllers/v1/decisions.go), read strictly and turned into
 * the bans Doorman can hold. No I/O.
 *
 *   {"new": [Decision, …] | null, "deleted": [Decision, …] | null}
 *   Decision: {"id": 12, "origin": "crowdsec" | "cscli" | "CAPI" | "lists" | …,
 *              "type": "ban" | "captcha" | …, "scope": "Ip" | "Range" | …,
 *              "value": "192.0.2.7" | "192.0.2.0/24", "duration": "3h59m58.1s",
 *              "scenario": "crowdsecurity/ssh-bf", …}
 *
 * Seen from Debian's crowdsec 1.4.6: an empty list is written `null`, not
 * `[]` (Go's nil slice); a deleted decision's duration is negative
 * ("-10.53ms": its end was moved to the moment it was deleted); an answer
 * with startup=true lists every active decision in `new` and the expired
 * ones in `deleted`. Later versions add fields (uuid, until), which are
 * ignored. A decision is known by its id: one address may carry several
 * (two scenarios, or an operator's and a scenario's), and deleting one
 * leaves the others in force.
 *
 * An answer that is not this shape is refused whole (the caller keeps what
 * it had); a single decision that is malformed, of another type or scope,
 * or already over is skipped and counted, as the caller reports.
 */
import { z } from 'zod';
import { formatIp, maskWords, parseIp } from '../core/ip.js';
import { parseGoDuration, GO_DURATION_MAX_CHARS } from './go-duration.js';

/** An address or network, as CrowdSec writes them: an IPv6 network with its prefix is under 50 characters. */
const VALUE_MAX = 64;
/** A scenario name; the hub's are under 80 characters, a manual one names its machine. */
const SCENARIO_MAX = 256;
const WORD_MAX = 64;

const decisionSchema = z.object({
  id: z.number().int().min(0),
  origin: z.string().max(WORD_MAX),
  type: z.string().max(WORD_MAX),
  scope: z.string().max(WORD_MAX),
  value: z.string().max(VALUE_MAX),
  duration: z.string().max(GO_DURATION_MAX_CHARS),
  scenario: z.string().max(4096),
});

const listSchema = z.array(z.unknown()).nullable().optional();
const answerSchema = z.object({ new: listSchema, deleted: listSchema });

/** What the Local API said, each decision read or skipped. */
export interface StreamAnswer {
  readonly added: readonly Decision[];
  /** Ids of decisions deleted or expired. */
  readonly deleted: readonly number[];
  /** Decisions not taken, by why: malformed, type (not ban), scope (not Ip or Range), over (already ended). */
  readonly skipped: Readonly<Record<SkipReason, number>>;
}

export type SkipReason = 'malformed' | 'type' | 'scope' | 'over';

/** A ban decision Doorman can hold. */
export interface Decision {
  readonly id: number;
  /** The address (canonical text) or network (masked, with its prefix length) banned. */
  readonly target: string;
  /** Milliseconds left when the answer was written. */
  readonly ttlMs: number;
  readonly origin: string;
  readonly scenario: string;
}

/** Why an answer was refused whole. */
export class StreamShapeError extends Error {}

/** Reads a parsed JSON answer; throws StreamShapeError when it is not a stream answer at all. */
export function readStreamAnswer(json: unknown): StreamAnswer {
  const top = answerSchema.safeParse(json);
  if (!top.success) throw new StreamShapeError(`not a decisions stream answer (${top.error.issues[0]?.message ?? 'wrong shape'} at ${top.error.issues[0]?.path.join('.') || 'the top'})`);
  const skipped: Record<SkipReason, number> = { malformed: 0, type: 0, scope: 0, over: 0 };
  const added: Decision[] = [];
  for (const raw of top.data.new ?? []) {
    const d = readDecision(raw);
    if (typeof d === 'string') skipped[d]++;
    else added.push(d);
  }
  const deleted: number[] = [];
  for (const raw of top.data.deleted ?? []) {
    // Only the id matters for a deletion: it names a decision this bouncer may hold.
    const id = (raw as { id?: unknown } | null)?.id;
    if (typeof id === 'number' && Number.isSafeInteger(id) && id >= 0) deleted.push(id);
    else skipped.malformed++;
  }
  return { added, deleted, skipped };
}

/** One decision of `new`, or why it is skipped. */
export function readDecision(raw: unknown): Decision | SkipReason {
  const r = decisionSchema.safeParse(raw);
  if (!r.success) return 'malformed';
  const d = r.data;
  if (d.type.toLowerCase() !== 'ban') return 'type';
  const scope = d.scope.toLowerCase();
  if (scope !== 'ip' && scope !== 'range') return 'scope';
  const target = banTarget(d.value, scope === 'range');
  if (target === null) return 'malformed';
  const ttlMs = parseGoDuration(d.duration);
  if (ttlMs === null) return 'malformed';
  if (ttlMs <= 0) return 'over';
  return { id: d.id, target, ttlMs, origin: d.origin, scenario: d.scenario.slice(0, SCENARIO_MAX) };
}

/**
 * The canonical form of an Ip decision's address or a Range decision's
 * network ("192.0.2.0/24" for "192.0.2.9/24", a bare address for a /32),
 * or null when it is neither. A Range without a prefix is an address.
 */
export function banTarget(value: string, range: boolean): string | null {
  const slash = value.indexOf('/');
  if (!range && slash >= 0) return null;
  const ip = parseIp(slash < 0 ? value : value.slice(0, slash));
  if (ip === null) return null;
  const max = ip.family === 4 ? 32 : 128;
  let len = max;
  if (slash >= 0) {
    const t = value.slice(slash + 1);
    if (!/^\d{1,3}$/.test(t)) return null;
    len = Number(t);
    if (len > max) return null;
  }
  const bits = ip.family === 4 ? 96 + len : len;
  const text = formatIp({ words: maskWords(ip.words, bits), family: ip.family });
  return len === max ? text : `${text}/${len}`;
}

/** Why a decision is in force, as the bans list shows it. */
export function banReason(d: Pick<Decision, 'scenario' | 'origin'>): string {
  return `crowdsec: ${d.scenario || 'no scenario'} (${d.origin})`;
}
