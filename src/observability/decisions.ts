/**
 * What every front-end does with a decision besides answering: a log line
 * for each dry-run rule that would have refused, a log line for a refusal,
 * and the refusal event the admin API's stream, the metrics and the refusal
 * record behind `doorman why` read (and, for a failed login, the
 * authFailure event). One function for every front-end, each with its own
 * words (the lines admins already grep for). An allowed decision costs
 * nothing here beyond a look at its empty dry-run list.
 */
import type { Logger } from 'pino';
import type { Decision } from '../core/decision.js';
import type { DoorEventBus } from '../core/events.js';

export interface DecisionWords {
  /** The front-end, as refusal events name it: proxy, policy, dovecot. */
  readonly by: string;
  /** The log message of a refusal. */
  readonly refused: string;
  /** The log message of a rule that would refuse, in dry-run. */
  readonly dryRun: string;
}

/**
 * Records `d` for a client of `service` at `address` (canonical form);
 * `fields` go on the log lines as the front-end names them.
 */
export type DecisionRecorder = (d: Decision, service: string, address: string, fields: Record<string, unknown>) => void;

export function decisionRecorder(log: Logger, events: DoorEventBus | null, words: DecisionWords): DecisionRecorder {
  return (d, service, address, fields) => {
    for (const r of d.dryRun) log.info({ ...fields, rule: r.rule, reason: r.reason, country: d.country }, words.dryRun);
    const r = d.refusal;
    if (r === null) return;
    log.info({ ...fields, rule: r.rule, reason: r.reason, country: d.country }, words.refused);
    // Checked first: with nobody listening, a refusal costs no event object.
    if (events !== null && events.listenerCount('refusal') > 0) {
      events.emit('refusal', { service, address, country: d.country, rule: r.rule, reason: r.reason, by: words.by, refusal: r });
    }
  };
}

/**
 * Tells the bus of a login that failed, as a front-end learnt it (Dovecot's
 * report), for whoever passes it on (CrowdSec's signals log). With nobody
 * listening it builds nothing.
 */
export function recordAuthFailure(events: DoorEventBus | null, service: string, address: string, by: string): void {
  if (events !== null && events.listenerCount('authFailure') > 0) events.emit('authFailure', { service, address, by });
}
