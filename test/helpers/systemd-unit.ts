/** systemd unit files as the tests read them: contrib/doorman.service, the installed one, the README's drop-in. */

/** The [Service] settings of a unit file or drop-in, every value of a key in order. */
export function unitSettings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const head = /^\[(.+)\]$/.exec(line);
    if (head) {
      section = head[1] as string;
      continue;
    }
    const eq = line.indexOf('=');
    if (section !== 'Service' || eq < 0) continue;
    const key = line.slice(0, eq);
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

/**
 * The capability bounding set systemd gives a unit: the union of its
 * CapabilityBoundingSet= lines (systemd.exec(5): merged by OR; an empty
 * assignment resets). Lines with "~" are not used by Doorman's unit and are
 * refused here rather than guessed.
 */
export function boundingSet(...files: ReadonlyArray<Map<string, string[]>>): string[] {
  let caps = new Set<string>();
  for (const f of files) {
    for (const v of f.get('CapabilityBoundingSet') ?? []) {
      if (v.trim() === '') caps = new Set();
      else if (v.trim().startsWith('~')) throw new Error(`CapabilityBoundingSet=${v}: inverted sets are not read here`);
      else for (const c of v.trim().split(/\s+/)) caps.add(c);
    }
  }
  return [...caps];
}

/** setpriv's --bounding-set for those capabilities: -all,+chown,+net_admin,… */
export function setprivBounding(caps: readonly string[]): string {
  return ['-all', ...caps.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`)].join(',');
}
