/**
 * nginx's mail auth_http protocol: the answer to ./nginx-auth.ts's request.
 * No I/O. nginx reads the headers alone (status line and body ignored, names
 * compared without regard to case, the last of a name winning), as
 * ngx_mail_auth_http_process_headers does in 1.22.1 and 1.26.3 alike:
 *
 *   Auth-Status: OK              go to the backend in Auth-Server and
 *   Auth-Server: 192.0.2.10      Auth-Port. The server must be an IPv4 or a
 *   Auth-Port: 143               bare IPv6 address: a name or [::1] gets the
 *                                client "internal server error".
 *   Auth-Status: TEXT            refused. The client sees `TAG NO TEXT`
 *   Auth-Wait: N                 (IMAP), `-ERR TEXT` (POP3) or `CODE TEXT`
 *   Auth-Error-Code: 454 4.7.0   (SMTP; CODE is Auth-Error-Code, default
 *                                535 5.7.0). Without Auth-Wait, or with 0,
 *                                nginx closes after the line; with N it holds
 *                                the client N s, then sends the line and lets
 *                                it try again in the same session (with the
 *                                next Auth-Login-Attempt).
 *   Auth-Status: WAIT            not in nginx's documentation: ask again
 *   Auth-Wait: N                 after N s, with the same attempt number (at
 *                                once without N).
 *
 * An error text sticks even if an "OK" follows; an Auth-Wait that is not a
 * number is ignored; for SMTP an empty text is no error at all. nginx reads
 * the answer into 1024 bytes and never more: a longer one fails the client,
 * at once or after auth_http_timeout (both seen), hence ANSWER_BUDGET.
 *
 * Doorman never sends Auth-User or Auth-Pass (credentials for the backend):
 * nginx then logs in to the backend with the client's own, which it has for
 * plain and login but not for apop and cram-md5. An OK to those, for IMAP
 * and POP3, fails in nginx ("did not send password"): serve plain and login.
 */
import type { Refusal } from '../core/decision.js';
import { formatIp, parseIp } from '../core/ip.js';
import { NginxAuthError, type NginxMailProtocol } from './nginx-auth.js';
import type { CodeOf } from '../errors.js';
import { postfixAction } from './smtp-replies.js';

/** What nginx reads an answer into (ngx_mail_auth_http_read_handler: a 1024-byte buffer, never grown). */
export const NGINX_ANSWER_BUFFER = 1024;
/**
 * The bytes of our own header lines in an answer: the rest of the 1024 is for
 * the status line and the HTTP server's own headers (Node's status line, Date
 * and Connection came to 75 bytes; a framework adds a few more).
 */
export const ANSWER_BUDGET = 640;
/** A refusal text, after sanitizing: an answer with the longest one and every other header fits ANSWER_BUDGET. */
export const MAX_STATUS_TEXT = 512;
/** Auth-Wait: RFC 5321 4.5.3.2 gives a client five minutes for a reply; a longer hold is a close in disguise. */
export const MAX_WAIT_SEC = 300;

/** What Doorman answers: go to a backend, refuse (and close, or hold the client waitSec and let it retry), or ask again later. */
export type NginxAuthAnswer =
  | { readonly status: 'ok'; readonly server: string; readonly port: number }
  | { readonly status: 'refuse'; readonly text: string; readonly waitSec: number; readonly smtpCode: string | null }
  | { readonly status: 'wait'; readonly waitSec: number };

const SMTP_CODE = /^([45])[0-9]{2} \1\.[0-9]{1,3}\.[0-9]{1,3}$/;

function fail(code: CodeOf<'protocol'>, header: string | null, message: string): never {
  throw new NginxAuthError(code, header, message);
}

/**
 * A text nginx can carry as Auth-Status and every client can read: printable
 * ASCII (controls become spaces, other characters "?"), trimmed, at most
 * MAX_STATUS_TEXT bytes, never empty, "OK" or "WAIT" (which mean something else).
 */
export function nginxStatusText(s: string): string {
  // eslint-disable-next-line no-control-regex
  let t = s.replace(/[\x00-\x1f\x7f]/g, ' ').replace(/[^\x20-\x7e]/gu, '?').trim();
  if (t.length > MAX_STATUS_TEXT) t = t.slice(0, MAX_STATUS_TEXT).trimEnd();
  if (t === '') return 'Refused';
  return t === 'OK' || t === 'WAIT' ? `Refused: ${t}` : t;
}

function isStatusText(t: string): boolean {
  return t === nginxStatusText(t);
}

/** The answer's headers, in order; refuses (DOORMAN_ERR_NGINX_ENCODE) what nginx would misread. */
export function encodeNginxAuthAnswer(a: NginxAuthAnswer): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const wait = (n: number, min: number) => {
    if (!Number.isInteger(n) || n < min || n > MAX_WAIT_SEC) fail('DOORMAN_ERR_NGINX_ENCODE', 'Auth-Wait', `seconds from ${min} to ${MAX_WAIT_SEC}, got ${n}`);
    if (n > 0) out.push(['Auth-Wait', String(n)]);
  };
  switch (a.status) {
    case 'ok': {
      const ip = parseIp(a.server);
      if (ip === null) fail('DOORMAN_ERR_NGINX_ENCODE', 'Auth-Server', `nginx takes only an IP address, got ${JSON.stringify(a.server.slice(0, 64))}`);
      if (!Number.isInteger(a.port) || a.port < 1 || a.port > 65535) fail('DOORMAN_ERR_NGINX_ENCODE', 'Auth-Port', `1 to 65535, got ${a.port}`);
      out.push(['Auth-Status', 'OK'], ['Auth-Server', formatIp(ip)], ['Auth-Port', String(a.port)]);
      break;
    }
    case 'refuse':
      if (!isStatusText(a.text)) fail('DOORMAN_ERR_NGINX_ENCODE', 'Auth-Status', 'not a status text (see nginxStatusText)');
      out.push(['Auth-Status', a.text]);
      wait(a.waitSec, 0);
      if (a.smtpCode !== null) {
        if (!SMTP_CODE.test(a.smtpCode)) fail('DOORMAN_ERR_NGINX_ENCODE', 'Auth-Error-Code', `expected "4xx 4.x.x" or "5xx 5.x.x", got ${JSON.stringify(a.smtpCode.slice(0, 16))}`);
        out.push(['Auth-Error-Code', a.smtpCode]);
      }
      break;
    case 'wait':
      out.push(['Auth-Status', 'WAIT']);
      wait(a.waitSec, 1);
      break;
  }
  const size = out.reduce((n, [k, v]) => n + k.length + v.length + 4, 0);
  if (size > ANSWER_BUDGET) fail('DOORMAN_ERR_NGINX_ENCODE', null, `an answer of ${size} bytes, more than ${ANSWER_BUDGET}`);
  return out;
}

/**
 * What nginx 1.22–1.26 makes of an answer's headers for a `protocol`
 * session (ngx_mail_auth_http_process_headers): the last of each name wins,
 * an error text sticks even if "OK" follows, a bad Auth-Wait is ignored.
 * What it would answer "internal server error" to throws DOORMAN_ERR_NGINX_ANSWER.
 */
export function readNginxAuthAnswer(headers: Iterable<readonly [string, string]>, protocol: NginxMailProtocol): NginxAuthAnswer {
  let err: string | null = null;
  let waitStatus = false;
  let server = '';
  let port = '';
  let waitSec = 0;
  let code: string | null = null;
  for (const [rawName, value] of headers) {
    switch (rawName.toLowerCase()) {
      case 'auth-status':
        if (value === 'OK') break;
        if (value === 'WAIT') waitStatus = true;
        // An empty text makes no error line for SMTP, which then wants a server.
        else if (value !== '' || protocol !== 'smtp') err = value;
        break;
      case 'auth-server':
        server = value;
        break;
      case 'auth-port':
        port = value;
        break;
      case 'auth-wait':
        if (/^[0-9]{1,9}$/.test(value)) waitSec = Number(value);
        break;
      case 'auth-error-code':
        code = value;
        break;
    }
  }
  if (err !== null) return { status: 'refuse', text: err, waitSec, smtpCode: protocol === 'smtp' ? code : null };
  if (waitStatus) return { status: 'wait', waitSec };
  const ip = parseIp(server);
  if (ip === null) fail('DOORMAN_ERR_NGINX_ANSWER', 'Auth-Server', `nginx needs an IP address, got ${JSON.stringify(server.slice(0, 64))}`);
  if (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) fail('DOORMAN_ERR_NGINX_ANSWER', 'Auth-Port', `nginx needs 1 to 65535, got ${JSON.stringify(port.slice(0, 16))}`);
  return { status: 'ok', server: formatIp(ip), port: Number(port) };
}

/**
 * A Doorman refusal in the words of `protocol`'s client, through nginx:
 * IMAP `TAG NO [UNAVAILABLE] …` (temporary) or `[CONTACTADMIN]` (RFC 5530);
 * POP3 `-ERR [SYS/TEMP] …` or `[SYS/PERM]` (RFC 3206); SMTP the codes of
 * postfixAction: 421 4.7.0 when nginx closes, 454 4.7.0 (RFC 4954's
 * temporary AUTH failure) when it holds the client `waitSec` and lets it
 * retry, 554 5.7.1 when permanent. The text is postfixAction's: the reason,
 * then "try again in N s" or "try again later".
 */
export function nginxRefusal(protocol: NginxMailProtocol, r: Pick<Refusal, 'temporary' | 'reason' | 'retryAfterSec'>, waitSec = 0): NginxAuthAnswer {
  // postfixAction reads only temporary, reason and retryAfterSec; cause and rule are placeholders.
  const line = postfixAction({ action: 'refuse', refusal: { ...r, cause: 'store', rule: '' }, dryRun: [], exempt: null, country: null }, 'connect');
  const at = line.indexOf(' ', line.indexOf(' ') + 1);
  const code = line.slice(0, at);
  const words = line.slice(at + 1);
  switch (protocol) {
    case 'imap':
      return { status: 'refuse', text: nginxStatusText(`${r.temporary ? '[UNAVAILABLE]' : '[CONTACTADMIN]'} ${words}`), waitSec, smtpCode: null };
    case 'pop3':
      return { status: 'refuse', text: nginxStatusText(`${r.temporary ? '[SYS/TEMP]' : '[SYS/PERM]'} ${words}`), waitSec, smtpCode: null };
    case 'smtp':
      return { status: 'refuse', text: nginxStatusText(words), waitSec, smtpCode: r.temporary && waitSec > 0 ? '454 4.7.0' : code };
  }
}
