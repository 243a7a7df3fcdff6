/**
 * Postfix's anvil idents, SERVICE:CLIENT, as smtpd writes them: the core
 * counts under them and learns from them (./postfix-ranges.ts), so it reads
 * them itself; ../protocols/anvil.ts decodes the requests that carry them.
 */
import { isIP } from 'node:net';
import { parseClientRange } from './ip.js';

/** (service, client) recovered from an ident. */
export interface AnvilIdent {
  readonly service: string;
  readonly address: string;
}

/**
 * Splits SERVICE:ADDRESS. Both halves may hold colons: the service is a
 * master.cf name such as `smtp`, `2525`, `127.0.0.1:2525` or `[::1]:2525`,
 * and the address may be IPv6, or from Postfix 3.8 a range with its host
 * bits zero (`smtp:2001:db8::/84`, and ::1 as `smtp:::/84`). We take the
 * first split whose right side is an IP address or such a range and whose
 * left side is a plausible service name (not itself a bare IP). If no split yields an IP, the ident is kept whole as an opaque
 * client name under the service before the first colon, because anvil itself
 * never interprets it and refusing it would only make smtpd log errors.
 */
export function parseAnvilIdent(ident: string): AnvilIdent {
  let from = 0;
  for (;;) {
    const colon = ident.indexOf(':', from);
    if (colon === -1) break;
    const service = ident.slice(0, colon);
    const address = ident.slice(colon + 1);
    if (service.length > 0 && isClient(address) && isServiceName(service)) return { service, address };
    from = colon + 1;
  }
  const first = ident.indexOf(':');
  if (first > 0) return { service: ident.slice(0, first), address: ident.slice(first + 1) };
  return { service: '', address: ident };
}

/** An IP address, or a network as Postfix 3.8+ smtpd sends it ("2001:db8::/84", "::/84"). */
function isClient(s: string): boolean {
  return s.indexOf('/') === -1 ? isIP(s) !== 0 : parseClientRange(s) !== null;
}

function isServiceName(s: string): boolean {
  if (s.startsWith('[')) return /^\[[0-9A-Fa-f:.]+\]:[A-Za-z0-9_.-]+$/.test(s);
  if (isIP(s) !== 0) return false;
  const colon = s.indexOf(':');
  if (colon === -1) return true;
  return s.indexOf(':', colon + 1) === -1 && colon > 0 && colon < s.length - 1;
}
