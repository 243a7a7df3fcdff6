/**
 * A network namespace for the nftables set tests: its loopback interface
 * holding a server's and the clients' addresses, the README's table and
 * sets with a rule that drops what they hold, and a prober inside (a node
 * process listening on every address and connecting from any on demand), so
 * no packet leaves the namespace. Needs root, nft and ip.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** The table and sets as the README tells the admin to write them, with the drop rules. */
export const RULESET = `
table inet filter {
  set doorman_v4 { type ipv4_addr; flags interval, timeout; }
  set doorman_v6 { type ipv6_addr; flags interval, timeout; }
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr @doorman_v4 drop
    ip6 saddr @doorman_v6 drop
  }
}
`;
export const SERVER4 = '192.0.2.1';
export const SERVER6 = '2001:db8::1';
/** A connect that is not answered in this time counts as dropped; one that is answered comes back in a few ms. */
export const DROPPED_AFTER_MS = 1500;

/** Why the namespace tests cannot run here, or undefined. */
export function netnsMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root (network namespaces and nft need it)';
  if (spawnSync('nft', ['--version']).status !== 0) return 'nft is not installed (Debian package nftables)';
  if (spawnSync('ip', ['-V']).status !== 0) return 'ip is not installed (Debian package iproute2)';
  return undefined;
}

export function sh(args: readonly string[], input?: string): string {
  const r = spawnSync(args[0] as string, args.slice(1), { input, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** A node process inside the namespace: a listener on every address, and connects from any address on demand. */
const PROBER = `
const net = require('node:net');
const server = net.createServer((s) => s.destroy());
server.listen({ host: '::', port: 0 }, () => process.stdout.write(JSON.stringify({ port: server.address().port }) + '\\n'));
require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const { id, from, to, port, ms } = JSON.parse(line);
  const s = net.connect({ host: to, port, localAddress: from });
  const answer = (result) => { clearTimeout(timer); s.destroy(); process.stdout.write(JSON.stringify({ id, result }) + '\\n'); };
  const timer = setTimeout(() => answer('dropped'), ms);
  s.once('connect', () => answer('connected'));
  s.once('error', (e) => answer(e.code));
});
process.stdin.on('end', () => process.exit(0));
`;

/** The namespace's connecting client. */
export class Prober {
  private readonly waiting = new Map<number, (r: string) => void>();
  private id = 0;
  port = 0;
  private constructor(private readonly child: ChildProcess) {}

  static async start(ns: string, dir: string): Promise<Prober> {
    const file = join(dir, 'prober.cjs');
    writeFileSync(file, PROBER);
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, file], { stdio: ['pipe', 'pipe', 'inherit'] });
    const p = new Prober(child);
    const ready = new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`the namespace's prober exited ${code}`)));
      createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
        const m = JSON.parse(line) as { port?: number; id?: number; result?: string };
        if (m.port !== undefined) {
          p.port = m.port;
          resolve();
        } else p.waiting.get(m.id as number)?.(m.result as string);
      });
    });
    await ready;
    return p;
  }

  /** 'connected', 'dropped' (no answer in DROPPED_AFTER_MS) or an error code. */
  connect(from: string): Promise<string> {
    const id = ++this.id;
    const to = from.includes(':') ? SERVER6 : SERVER4;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.child.stdin?.write(`${JSON.stringify({ id, from, to, port: this.port, ms: DROPPED_AFTER_MS })}\n`);
    });
  }

  stop(): void {
    this.child.stdin?.end();
    this.child.kill();
  }
}

/** The namespace: made with its addresses and RULESET; delete() removes it whatever happened. */
export class Netns {
  private constructor(readonly name: string) {}

  static create(name: string, addrs4: readonly string[], addrs6: readonly string[]): Netns {
    sh(['ip', 'netns', 'add', name]);
    const ns = new Netns(name);
    try {
      // On the namespace's loopback interface: no module needed (some kernels have no dummy), and the input hook sees it.
      sh(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
      for (const a of [SERVER4, ...addrs4]) sh(['ip', '-n', name, 'addr', 'add', `${a}/32`, 'dev', 'lo']);
      for (const a of [SERVER6, ...addrs6]) sh(['ip', '-n', name, 'addr', 'add', `${a}/128`, 'dev', 'lo']);
      ns.nft(['-f', '-'], RULESET);
    } catch (err) {
      ns.delete();
      throw err;
    }
    return ns;
  }

  nft(args: readonly string[], input?: string): string {
    return sh(['ip', 'netns', 'exec', this.name, 'nft', ...args], input);
  }

  /** The elements of a set as nft lists them now: text → timeout (s). */
  elements(set: string): Map<string, number> {
    const data = JSON.parse(this.nft(['-j', 'list', 'set', 'inet', 'filter', set])) as { nftables: Array<{ set?: { elem?: unknown[] } }> };
    const out = new Map<string, number>();
    for (const item of data.nftables) {
      for (const e of item.set?.elem ?? []) {
        const el = (e as { elem?: { val: unknown; timeout?: number } }).elem;
        if (el === undefined) continue;
        const v = el.val as string | { prefix?: { addr: string; len: number }; range?: [string, string] };
        const text = typeof v === 'string' ? v : v.prefix !== undefined ? `${v.prefix.addr}/${v.prefix.len}` : `${v.range?.[0]}-${v.range?.[1]}`;
        out.set(text, el.timeout ?? 0);
      }
    }
    return out;
  }

  delete(): void {
    spawnSync('ip', ['netns', 'del', this.name]);
  }
}
