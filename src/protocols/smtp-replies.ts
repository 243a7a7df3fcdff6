/**
 * Decisions in SMTP's words, as Postfix access(5) actions: 421 4.7.0 at
 * connect (smtpd answers and disconnects), 450 4.7.1 for a temporary refusal
 * later in the session, 554 5.7.1 for a permanent one, DUNNO to let
 * Postfix's other restrictions decide.
 */
import type { Decision } from '../core/decision.js';

export type SmtpPhase = 'connect' | 'later';

export function postfixAction(d: Decision, phase: SmtpPhase): string {
  const r = d.refusal;
  if (d.action === 'allow' || r === null) return 'DUNNO';
  if (!r.temporary) return `554 5.7.1 ${r.reason}`;
  const retry = r.retryAfterSec > 0 ? `, try again in ${r.retryAfterSec} s` : ', try again later';
  return phase === 'connect' ? `421 4.7.0 ${r.reason}${retry}` : `450 4.7.1 ${r.reason}${retry}`;
}
