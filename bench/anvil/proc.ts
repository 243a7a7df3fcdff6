/**
 * What the benchmark reads from /proc about a server process: CPU time
 * (utime + stime of the whole thread group) and resident memory. Linux only.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second for /proc/PID/stat; 100 on every Linux we target. */
const CLK_TCK = readClkTck();

function readClkTck(): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim());
    return Number.isInteger(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}

interface StatFields {
  readonly comm: string;
  readonly ppid: number;
  /** utime + stime in microseconds. */
  readonly cpuUs: number;
}

/** Parses /proc/PID/stat; the command name may hold spaces and parentheses, so split after the last ")". */
function readStat(pid: number): StatFields {
  const raw = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const open = raw.indexOf('(');
  const close = raw.lastIndexOf(')');
  const rest = raw.slice(close + 2).split(' ');
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return { comm: raw.slice(open + 1, close), ppid: Number(rest[1]), cpuUs: ((utime + stime) * 1e6) / CLK_TCK };
}

/** CPU time (user + system) the process has used so far, in microseconds (10 ms resolution). */
export function cpuTimeUs(pid: number): number {
  return readStat(pid).cpuUs;
}

/**
 * CPU time the whole machine spent busy (user, nice, system, irq, softirq,
 * steal; all CPUs) so far, in microseconds. Busy minus server minus
 * generator is what other processes took: the noise in a run.
 */
export function machineBusyUs(): number {
  const line = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0] as string;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return ((user + nice + system + irq + softirq + steal) * 1e6) / CLK_TCK;
}

/** Resident set size in bytes, from VmRSS. */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (m === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** PIDs of the children of `ppid` whose command name is `comm`. */
export function childrenNamed(ppid: number, comm: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const s = readStat(Number(name));
      if (s.ppid === ppid && s.comm === comm) out.push(Number(name));
    } catch {
      // the process went away while we looked
    }
  }
  return out;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Pins every thread of `pid` to one CPU (threads made later inherit it), so
 * that server and generator each get a core of the two-core machine and do
 * not trade places. Returns false when taskset is missing or refuses.
 */
export function pinToCpu(pid: number, cpu: number): boolean {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * CPU time of this process plus that of its children that have exited and
 * been waited for (cutime + cstime), in microseconds: what a run of a
 * short-lived tool (redis-benchmark) cost, read after it exits.
 */
export function selfAndChildrenCpuUs(): number {
  const raw = readFileSync('/proc/self/stat', 'latin1');
  const rest = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
  // rest[11..14] are fields 14-17: utime, stime, cutime, cstime.
  const ticks = Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]);
  return (ticks * 1e6) / CLK_TCK;
}
