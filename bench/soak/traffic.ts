/**
 * The soak's mixed traffic, until stop():
 *
 * - anvil: persistent clients, each an smtpd: connect, messages and
 *   recipients, sometimes newtls, auth or a lookup, disconnect; now and then
 *   the client goes away mid-session still holding its connect, and a new
 *   one takes its place (Doorman must release what the old one held);
 * - policy: persistent clients asking CONNECT, RCPT (some authenticated) and
 *   END-OF-MESSAGE for many addresses, now and then reconnecting;
 * - guard proxy (IMAP), each worker from loopback addresses of its own
 *   (127.W.x.y): whole sessions (greeting, NOOP, LOGOUT), sessions that
 *   linger a while, clients that reset or close after the greeting or
 *   half-close, sessions kicked through the admin API, bursts of four
 *   from one address against a limit of three (one refused), and bulk:
 *   FETCHes and APPENDs of up to a few MiB, checked byte for byte (the
 *   relay's bulk path, with its own read buffers), and a FETCH kicked
 *   half-way.
 *
 * Every outcome is checked; anything unexpected is an error, counted and
 * kept (the first few). The engine keys the traffic touched are collected
 * for the zero check afterwards.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { AnvilTestClient } from '../../test/helpers/anvil-client.js';
import { PolicyTestClient } from '../../test/helpers/policy-client.js';
import { RawClient } from '../../test/helpers/raw-client.js';
import { bulkPattern } from './backend.js';
import type { AdminApi } from './probe.js';

export interface SoakTargets {
  readonly anvilPath: string;
  readonly policyPort: number;
  readonly proxyPort: number;
  readonly admin: AdminApi;
}

export interface TrafficOptions {
  readonly anvilClients: number;
  readonly policyClients: number;
  readonly proxyWorkers: number;
  /** Mean pause between one loop's steps, ms: the soak is about time, not load. */
  readonly pauseMs: number;
  /** The guard's connections_per_address, for the refusal bursts. */
  readonly perAddressLimit: number;
}

/** One step's deadline: far past any answer on a loaded two-core machine. */
const STEP_TIMEOUT_MS = 10_000;
const MAX_KEPT_ERRORS = 20;
/** Distinct clients per pool: enough to spread the counts, few enough to check them all afterwards. */
const SMTP_ADDRESSES = 1000;
const PROXY_ADDRESSES_PER_WORKER = 250;

/** Bulk sizes: below and above the 256 KiB after which the relay gives a direction its own read buffer. */
const BULK_SIZES = [100_000, 300_000, 1_048_576, 3_000_001];
/** A FETCH kicked half-way: big enough that the kick lands mid-transfer. */
const KICKED_FETCH = 64 * 1024 * 1024;

const rand = (n: number) => Math.floor(Math.random() * n);
const chance = (p: number) => Math.random() < p;

function smtpAddress(i: number): string {
  return i % 10 === 9 ? `2001:db8:5::${(i + 1).toString(16)}` : `198.18.${(i >> 8) & 0xff}.${i & 0xff}`;
}

export class Traffic {
  readonly ops = new Map<string, number>();
  errorCount = 0;
  readonly errors: string[] = [];
  /** Engine keys the traffic counted ("smtp:198.18.0.7", "imap:127.10.0.9"). */
  readonly keys = new Set<string>();
  private stopping = false;
  private loops: Array<Promise<void>> = [];
  private readonly t: SoakTargets;
  private readonly o: TrafficOptions;

  constructor(targets: SoakTargets, opts: TrafficOptions) {
    this.t = targets;
    this.o = opts;
  }

  start(): void {
    for (let i = 0; i < this.o.anvilClients; i++) this.loops.push(this.loop('anvil', () => this.anvilLoop()));
    for (let w = 0; w < this.o.proxyWorkers; w++) this.loops.push(this.loop('proxy', () => this.proxyLoop(w)));
    for (let i = 0; i < this.o.policyClients; i++) this.loops.push(this.loop('policy', () => this.policyLoop()));
  }

  /** Stops every loop after its current step and closes every client it holds. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.loops);
  }

  total(): number {
    let n = 0;
    for (const v of this.ops.values()) n += v;
    return n;
  }

  private count(kind: string): void {
    this.ops.set(kind, (this.ops.get(kind) ?? 0) + 1);
  }

  private error(where: string, err: unknown): void {
    this.errorCount++;
    if (this.errors.length < MAX_KEPT_ERRORS) this.errors.push(`${where}: ${err instanceof Error ? err.message : String(err)}`);
  }

  private pause(): Promise<void> {
    return sleep(rand(2 * this.o.pauseMs + 1));
  }

  /** Runs `body` until stop(); an error in it is counted and the loop starts over. */
  private async loop(where: string, body: () => Promise<void>): Promise<void> {
    while (!this.stopping) {
      try {
        await body();
      } catch (err) {
        this.error(where, err);
        await sleep(100);
      }
    }
  }

  private async anvilLoop(): Promise<void> {
    const c = await AnvilTestClient.open(this.t.anvilPath);
    try {
      while (!this.stopping) {
        const ident = `smtp:${smtpAddress(rand(SMTP_ADDRESSES))}`;
        this.keys.add(ident);
        const expect = (what: string, r: { status: number }) => {
          if (r.status !== 0) throw new Error(`anvil ${what} ${ident}: status ${r.status}`);
          this.count(`anvil ${what}`);
        };
        expect('connect', await c.request('connect', ident));
        for (let m = rand(3); m > 0; m--) {
          expect('message', await c.request('message', ident));
          for (let r = 1 + rand(3); r > 0; r--) expect('recipient', await c.request('recipient', ident));
        }
        if (chance(0.1)) expect('newtls', await c.request('newtls', ident));
        if (chance(0.1)) expect('auth', await c.request('auth', ident));
        if (chance(0.05)) expect('lookup', await c.request('lookup', ident));
        if (chance(0.02)) {
          // Gone mid-session, its connect still held: the next loop opens a new client.
          this.count('anvil client gone holding a connect');
          return;
        }
        expect('disconnect', await c.request('disconnect', ident));
        await this.pause();
      }
    } finally {
      c.destroy();
    }
  }

  private async policyLoop(): Promise<void> {
    const c = await PolicyTestClient.open({ port: this.t.policyPort });
    try {
      while (!this.stopping) {
        const address = smtpAddress(rand(SMTP_ADDRESSES));
        this.keys.add(`smtp:${address}`);
        const ask = async (state: string, extra: Record<string, string> = {}) => {
          const a = await c.ask({ request: 'smtpd_access_policy', protocol_state: state, protocol_name: 'ESMTP', client_address: address, ...extra }, STEP_TIMEOUT_MS);
          if (a === null || !/^(DUNNO|4\d\d |5\d\d )/.test(a)) throw new Error(`policy ${state} ${address}: ${String(a)}`);
          this.count(`policy ${state}${a === 'DUNNO' ? '' : ' refused'}`);
        };
        await ask('CONNECT');
        const user: Record<string, string> = chance(0.2) ? { sasl_username: `user${rand(100)}` } : {};
        for (let r = 1 + rand(3); r > 0; r--) await ask('RCPT', user);
        await ask('END-OF-MESSAGE');
        if (chance(0.02)) {
          this.count('policy client reconnects');
          return;
        }
        await this.pause();
      }
    } finally {
      c.close();
    }
  }

  private async proxyLoop(worker: number): Promise<void> {
    let last = -1;
    while (!this.stopping) {
      // Never the address just used: its count is given back when the proxy sees the close, a
      // moment after we do, and a burst from it could then meet its own leftover.
      let i = rand(PROXY_ADDRESSES_PER_WORKER);
      if (i === last) i = (i + 1) % PROXY_ADDRESSES_PER_WORKER;
      last = i;
      const address = `127.${10 + worker}.${i >> 6}.${(i & 63) + 1}`;
      this.keys.add(`imap:${address}`);
      const r = Math.random();
      if (r < 0.64) await this.session(address, 0);
      else if (r < 0.67) await this.fetch(address);
      else if (r < 0.69) await this.append(address);
      else if (r < 0.7) await this.fetchKicked(address);
      else if (r < 0.75) await this.session(address, 500 + rand(1500));
      else if (r < 0.83) await this.cut(address, chance(0.5) ? 'reset' : 'close');
      else if (r < 0.9) await this.cut(address, 'half-close');
      else if (r < 0.95) await this.kicked(address);
      else await this.burst(address);
      await this.pause();
    }
  }

  private async open(address: string): Promise<RawClient> {
    const c = await RawClient.open(this.t.proxyPort, { localAddress: address });
    try {
      await c.waitFor(/^\* OK soak backend ready\r\n/, STEP_TIMEOUT_MS);
    } catch (err) {
      c.destroy();
      throw err;
    }
    return c;
  }

  private async logout(c: RawClient): Promise<void> {
    c.write('a1 NOOP\r\n');
    await c.waitFor(/a1 OK NOOP completed\r\n/, STEP_TIMEOUT_MS);
    c.write('a2 LOGOUT\r\n');
    await c.waitFor(/a2 OK LOGOUT completed\r\n$/, STEP_TIMEOUT_MS);
    await c.closed(STEP_TIMEOUT_MS);
  }

  private async session(address: string, lingerMs: number): Promise<void> {
    const c = await this.open(address);
    try {
      if (lingerMs > 0) await sleep(lingerMs);
      await this.logout(c);
      this.count(lingerMs > 0 ? 'proxy session, lingering' : 'proxy session');
    } finally {
      c.destroy();
    }
  }

  /** Waits until `c` has received at least `n` characters (latin1: bytes). */
  private async received(c: RawClient, n: number): Promise<void> {
    const t0 = Date.now();
    while (c.received.length < n) {
      if (Date.now() - t0 > STEP_TIMEOUT_MS) throw new Error(`received ${c.received.length} of ${n} bytes`);
      await sleep(2);
    }
  }

  private async fetch(address: string): Promise<void> {
    const n = BULK_SIZES[rand(BULK_SIZES.length)] as number;
    const c = await this.open(address);
    try {
      const start = c.received.length;
      c.write('f1 FETCH ' + n + '\r\n');
      const head = `* 1 FETCH (BODY[] {${n}}\r\n`;
      const tail = ')\r\nf1 OK FETCH completed\r\n';
      await this.received(c, start + head.length + n + tail.length);
      const got = Buffer.from(c.received.slice(start), 'latin1');
      if (got.length !== head.length + n + tail.length) throw new Error(`FETCH ${n}: ${got.length} bytes`);
      if (got.subarray(0, head.length).toString('latin1') !== head || got.subarray(head.length + n).toString('latin1') !== tail) throw new Error(`FETCH ${n}: bad framing`);
      if (!got.subarray(head.length, head.length + n).equals(bulkPattern(n))) throw new Error(`FETCH ${n}: the body differs from what the backend sent`);
      await this.logout(c);
      this.count(n > 256 * 1024 ? 'proxy FETCH, bulk' : 'proxy FETCH');
    } finally {
      c.destroy();
    }
  }

  private async append(address: string): Promise<void> {
    const n = BULK_SIZES[rand(BULK_SIZES.length)] as number;
    const body = bulkPattern(n);
    const c = await this.open(address);
    try {
      c.write('a1 APPEND ' + n + '\r\n');
      c.socket.write(body);
      const want = `a1 OK APPEND ${createHash('sha256').update(body).digest('hex')} completed\r\n`;
      await c.waitFor(/a1 (OK|BAD) APPEND .*\r\n$/, STEP_TIMEOUT_MS);
      if (!c.received.endsWith(want)) throw new Error(`APPEND ${n}: the backend hashed other bytes (${JSON.stringify(c.received.slice(-120))})`);
      await this.logout(c);
      this.count(n > 256 * 1024 ? 'proxy APPEND, bulk' : 'proxy APPEND');
    } finally {
      c.destroy();
    }
  }

  /** A big FETCH kicked once a MiB has arrived: the goodbye follows what was sent, and the count is given back. */
  private async fetchKicked(address: string): Promise<void> {
    const c = await this.open(address);
    try {
      c.write('f1 FETCH ' + KICKED_FETCH + '\r\n');
      await this.received(c, 1 << 20);
      const r = await this.t.admin.post<{ kicked: number }>('/api/kick', { target: address, service: 'imap', reason: 'soak' });
      if (r.kicked !== 1) throw new Error(`kick ${address} mid-FETCH: kicked ${r.kicked}`);
      await c.closed(STEP_TIMEOUT_MS);
      // The goodbye comes after the body bytes already relayed, on a line of its own.
      if (!c.received.endsWith('\n* BYE [UNAVAILABLE] Connection closed by the administrator\r\n')) throw new Error(`kicked mid-FETCH: ended ${JSON.stringify(c.received.slice(-80))}`);
      this.count('proxy FETCH kicked half-way');
    } finally {
      c.destroy();
    }
  }

  private async cut(address: string, how: 'reset' | 'close' | 'half-close'): Promise<void> {
    const c = await this.open(address);
    if (how === 'reset') c.socket.resetAndDestroy();
    else if (how === 'close') c.destroy();
    else {
      c.socket.end();
      await c.closed(STEP_TIMEOUT_MS);
    }
    this.count(`proxy client ${how}`);
  }

  private async kicked(address: string): Promise<void> {
    const c = await this.open(address);
    try {
      const r = await this.t.admin.post<{ kicked: number }>('/api/kick', { target: address, service: 'imap', reason: 'soak' });
      if (r.kicked !== 1) throw new Error(`kick ${address}: kicked ${r.kicked}`);
      await c.waitFor(/\* BYE \[UNAVAILABLE\] Connection closed by the administrator\r\n$/, STEP_TIMEOUT_MS);
      await c.closed(STEP_TIMEOUT_MS);
      this.count('proxy session kicked');
    } finally {
      c.destroy();
    }
  }

  /** One more than the per-address limit from one address: the last is refused in IMAP's words. */
  private async burst(address: string): Promise<void> {
    const held: RawClient[] = [];
    try {
      for (let k = 0; k < this.o.perAddressLimit; k++) held.push(await this.open(address));
      const over = await RawClient.open(this.t.proxyPort, { localAddress: address });
      held.push(over);
      await over.waitFor(/^\* BYE \[UNAVAILABLE\] Too many connections from your address/, STEP_TIMEOUT_MS);
      await over.closed(STEP_TIMEOUT_MS);
      this.count('proxy refused over the per-address limit');
      await Promise.all(held.slice(0, -1).map((c) => this.logout(c)));
      for (let k = 0; k < this.o.perAddressLimit; k++) this.count('proxy session');
    } finally {
      for (const c of held) c.destroy();
    }
  }
}
