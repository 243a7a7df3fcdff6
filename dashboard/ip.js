/**
 * Just enough IP arithmetic for the page to apply the connection filter to
 * live events itself (address or CIDR, as the API's `address` filter takes)
 * and to sort addresses numerically rather than as text.
 */

/**
 * An address as a number and its family; null when it is none.
 * @param {string} s
 * @returns {{ v: 4 | 6, n: bigint } | null}
 */
export function parseIp(s) {
  if (s.includes(':')) return parseV6(s);
  const n = parseV4(s);
  return n === null ? null : { v: 4, n };
}

/** @returns {bigint | null} */
function parseV4(/** @type {string} */ s) {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  let n = 0n;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return null;
    n = (n << 8n) | BigInt(p);
  }
  return n;
}

/** @returns {{ v: 6, n: bigint } | null} */
function parseV6(/** @type {string} */ s) {
  let text = s.toLowerCase();
  /** @type {bigint[]} */
  let tail = [];
  // An embedded IPv4 tail (::ffff:192.0.2.1) counts as two groups.
  const dot = text.lastIndexOf(':');
  if (text.slice(dot + 1).includes('.')) {
    const v4 = parseV4(text.slice(dot + 1));
    if (v4 === null) return null;
    tail = [v4 >> 16n, v4 & 0xffffn];
    text = `${text.slice(0, dot + 1)}`;
    if (text.endsWith(':') && !text.endsWith('::')) text = text.slice(0, -1);
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groups = (/** @type {string} */ h) => (h === '' ? [] : h.split(':'));
  const head = groups(halves[0] ?? '');
  const rest = halves.length === 2 ? groups(halves[1] ?? '') : [];
  const total = head.length + rest.length + tail.length;
  if (halves.length === 1 ? total !== 8 : total > 7) return null;
  const all = [...head, ...Array(8 - total).fill('0'), ...rest];
  let n = 0n;
  for (const g of all) {
    if (!/^[0-9a-f]{1,4}$/.test(g)) return null;
    n = (n << 16n) | BigInt(parseInt(g, 16));
  }
  for (const t of tail) n = (n << 16n) | t;
  return { v: 6, n };
}

/**
 * A predicate for the API's `address` filter: an exact address or a CIDR network.
 * Null when the filter is neither (the page then leaves the judging to the server).
 * @param {string} filter
 * @returns {((address: string) => boolean) | null}
 */
export function addressMatcher(filter) {
  const [addr, len] = filter.trim().split('/');
  const ip = parseIp(addr ?? '');
  if (ip === null) return null;
  const bits = ip.v === 4 ? 32 : 128;
  const prefix = len === undefined ? bits : /^\d{1,3}$/.test(len) ? Number(len) : NaN;
  if (!(prefix >= 0 && prefix <= bits)) return null;
  const shift = BigInt(bits - prefix);
  const net = ip.n >> shift;
  return (address) => {
    const a = parseIp(address);
    return a !== null && a.v === ip.v && a.n >> shift === net;
  };
}

/**
 * A key that sorts addresses numerically as plain strings, IPv4 before IPv6,
 * anything else last: computed once per row, so sorting thousands costs no parsing.
 */
export function addressSortKey(/** @type {string} */ address) {
  const ip = parseIp(address);
  if (ip === null) return `z${address}`;
  return ip.v === 4 ? `4${ip.n.toString(16).padStart(8, '0')}` : `6${ip.n.toString(16).padStart(32, '0')}`;
}
