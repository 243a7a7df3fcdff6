/**
 * Which of Dovecot's two checks an `allow` request is. The before-auth and
 * the after-auth check of one login send the same URL and the same body
 * (./dovecot-policy.ts); only their order tells them apart. So the first
 * allow of a session_id is the before-auth check, and a later one, while
 * the session is remembered, the after-auth check; the report ends the
 * session. No I/O: the caller says what time it is.
 */

export type DovecotCheck = 'before-auth' | 'after-auth';

/** Logins in flight at once: 100 000 is minutes of a busy server's logins, about 10 MB with Dovecot's session ids. */
export const MAX_SESSIONS = 100_000;
/**
 * How long a session is remembered. Its two checks are one authentication
 * apart: seconds (auth_failure_delay, a tarpit), and Dovecot caps an auth
 * request's delay at 5 minutes (AUTH_REQUEST_MAX_DELAY_SECS).
 */
export const SESSION_TTL_MS = 5 * 60_000;

/** The sessions seen, bounded: when full, the oldest is forgotten first. */
export class DovecotSessions {
  private readonly seen = new Map<string, number>();

  /** The check an allow for `session` is at `now` (ms); without a session_id, always the before-auth check. */
  check(session: string | undefined, now: number): DovecotCheck {
    if (!session) return 'before-auth';
    const seen = this.seen.get(session);
    if (seen !== undefined && now - seen < SESSION_TTL_MS) return 'after-auth';
    if (this.seen.size >= MAX_SESSIONS) this.seen.delete(this.seen.keys().next().value as string);
    this.seen.set(session, now);
    return 'before-auth';
  }

  /** The report of `session`: it is over. */
  end(session: string | undefined): void {
    if (session) this.seen.delete(session);
  }

  /** Sessions remembered now. */
  get size(): number {
    return this.seen.size;
  }
}
