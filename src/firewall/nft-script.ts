/**
 * The nft helper's whitelist (./nft-helper.ts), with no I/O: the only nft
 * scripts the root helper runs for the unprivileged daemon are those the set
 * writer produces (./set-plan.ts) and the start-up check's listing
 * (./nft-set.ts), on exactly the configured table and sets:
 *
 *   flush set TABLE SET
 *   add element TABLE SET { ELEMENT timeout TIME[, ELEMENT timeout TIME]… }
 *   delete element TABLE SET { ELEMENT[, ELEMENT]… }
 *   list set TABLE SET                     (alone: run as nft -j -t list set …)
 *
 * one command a line, each line ended by "\n", single spaces, as the writer
 * prints them. TABLE is firewall.nft.table ("inet filter"), SET one of
 * set_v4 and set_v6; an ELEMENT is an address, a prefix or a lo-hi range of
 * that set's family, in the forms ./nft-elements.ts prints (IPv4 dotted
 * without leading zeros, IPv6 in lower case); TIME is nft's 1d2h3m4s5ms.
 *
 * Anything else is refused, naming the line: another command or table or
 * set, a second command on a line (nft reads ";" as a separator), comments,
 * variables, includes, quotes, element options other than timeout. So the
 * daemon, once it has given root up, can put addresses into its own two sets
 * and take them out, and nothing more.
 */
import { isIPv6 } from 'node:net';
import type { SetNames } from './set-plan.js';

export type ScriptCheck =
  /** Run as `nft -f -` with the script on standard input. */
  | { readonly ok: true; readonly kind: 'write'; readonly lines: number }
  /** Run as `nft ARGS…`: the listing the start-up check reads. */
  | { readonly ok: true; readonly kind: 'list'; readonly args: readonly string[] }
  | { readonly ok: false; readonly error: string };

const OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const V4 = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);
/** The characters of an IPv6 address as formatIp writes it (a dotted tail is possible in ::a.b.c.d forms). */
const V6_CHARS = /^[0-9a-f:.]{2,45}$/;
/** A prefix length without leading zeros. */
const PREFIX = /^(?:0|[1-9][0-9]{0,2})$/;
/** nft's time as ./nft-elements.ts timeoutText() prints it: units in order, each present once at most, no zero. */
const TIME = /^(?=[1-9])(?:[1-9][0-9]{0,5}d)?(?:[1-9][0-9]?h)?(?:[1-9][0-9]?m)?(?:[1-9][0-9]?s)?(?:[1-9][0-9]{0,2}ms)?$/;

function address(text: string, family: 4 | 6): boolean {
  return family === 4 ? V4.test(text) : V6_CHARS.test(text) && isIPv6(text);
}

/** An address, ADDRESS/LEN or LO-HI of the family. */
export function validElement(text: string, family: 4 | 6): boolean {
  const slash = text.indexOf('/');
  if (slash >= 0) {
    const len = text.slice(slash + 1);
    return PREFIX.test(len) && Number(len) <= (family === 4 ? 32 : 128) && address(text.slice(0, slash), family);
  }
  const dash = text.indexOf('-');
  if (dash >= 0) return address(text.slice(0, dash), family) && address(text.slice(dash + 1), family);
  return address(text, family);
}

/** The items between `{ ` and ` }`, each checked; a reason when one is not right. */
function items(body: string, family: 4 | 6, withTimeout: boolean): string | null {
  const list = body.split(', ');
  for (let i = 0; i < list.length; i++) {
    const item = list[i] as string;
    let element = item;
    if (withTimeout) {
      const at = item.indexOf(' timeout ');
      if (at < 0) return `element ${i + 1} has no timeout`;
      if (!TIME.test(item.slice(at + 9))) return `element ${i + 1}: the timeout is not a time such as 1h2m3s`;
      element = item.slice(0, at);
    }
    if (!validElement(element, family)) return `element ${i + 1} is not an IPv${family} address, prefix or range`;
  }
  return null;
}

const show = (line: string) => JSON.stringify(line.length > 80 ? `${line.slice(0, 80)}…` : line);

/** Why one line is refused, or null when it is one of the writer's commands. */
function checkLine(line: string, table: string, sets: ReadonlyMap<string, 4 | 6>): string | null {
  const verb = /^(flush set|add element|delete element|list set) /.exec(line);
  if (verb === null) return 'not flush set, add element, delete element or list set';
  const rest = line.slice(verb[0].length);
  if (!rest.startsWith(`${table} `)) return `not the table ${table}`;
  const tail = rest.slice(table.length + 1);
  const space = tail.indexOf(' ');
  const set = space < 0 ? tail : tail.slice(0, space);
  const family = sets.get(set);
  if (family === undefined) return `not one of the sets ${[...sets.keys()].join(', ')}`;
  const after = space < 0 ? '' : tail.slice(space);
  if (verb[1] === 'flush set' || verb[1] === 'list set') return after === '' ? null : 'more after the set name';
  if (!after.startsWith(' { ') || !after.endsWith(' }') || after.length < 6) return 'no { element, … } after the set name';
  return items(after.slice(3, -2), family, verb[1] === 'add element');
}

/**
 * Checks a script against the whitelist. A listing must be the script's
 * only line; the writer's commands may come in any number.
 */
export function checkScript(script: string, names: SetNames): ScriptCheck {
  if (script === '') return { ok: false, error: 'an empty script' };
  if (!script.endsWith('\n')) return { ok: false, error: 'the script does not end with a newline' };
  const sets = new Map<string, 4 | 6>();
  if (names.v4 !== null) sets.set(names.v4, 4);
  if (names.v6 !== null && !sets.has(names.v6)) sets.set(names.v6, 6);
  const lines = script.slice(0, -1).split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const why = checkLine(line, names.table, sets);
    if (why !== null) return { ok: false, error: `line ${i + 1} ${show(line)}: ${why}` };
    if (line.startsWith('list set ')) {
      if (lines.length > 1) return { ok: false, error: `line ${i + 1} ${show(line)}: a listing must be the script's only line` };
      const [family, table] = names.table.split(' ') as [string, string];
      return { ok: true, kind: 'list', args: ['-j', '-t', 'list', 'set', family, table, line.slice(`list set ${names.table} `.length)] };
    }
  }
  return { ok: true, kind: 'write', lines: lines.length };
}
