/**
 * The fleet's messages, over Redis pub/sub: which nodes are alive, state
 * changes (./state.ts publishes them), and questions every node answers —
 * "your live connections matching this filter", "kick these". A node asks
 * on one channel and collects the answers on its own reply channel, waiting
 * for every live node until a deadline; a node that does not answer in time
 * is named in the result, never waited on for ever.
 *
 * Nodes are alive while their heartbeat in a sorted set (score: when it
 * ends) is fresh: renewed every few seconds, removed at a clean stop.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { RedisClient } from '../store/redis-client.js';

export interface FleetRequest {
  readonly op: string;
  readonly args: unknown;
}

export interface FleetAnswers<T> {
  /** Answers by node name, this node's included. */
  readonly answers: ReadonlyMap<string, T>;
  /** Live nodes that did not answer before the deadline. */
  readonly missing: readonly string[];
}

type Handler = (args: unknown) => Promise<unknown> | unknown;

interface Pending {
  readonly waiting: Set<string>;
  readonly answers: Map<string, unknown>;
  readonly done: () => void;
}

export interface FleetBusOptions {
  readonly client: RedisClient;
  /** A second connection: Redis gives a subscribed connection to pub/sub alone. */
  readonly subscriber: RedisClient;
  readonly prefix: string;
  readonly node: string;
  /** A node is alive this long after its last heartbeat. */
  readonly leaseMs: number;
  /** How long a question waits for answers. */
  readonly answerTimeoutMs?: number;
  readonly log: Logger;
}

/** Messages are small; one larger than this is dropped unread. */
const MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

export class FleetBus {
  readonly node: string;
  private readonly o: FleetBusOptions;
  private readonly nodesKey: string;
  private readonly requests: string;
  private readonly replies: string;
  private readonly handlers = new Map<string, Handler>();
  private readonly pending = new Map<string, Pending>();
  private readonly listeners = new Map<string, (message: Record<string, unknown>) => void>();
  private timer: NodeJS.Timeout | null = null;
  /** Channels beyond the bus's own, subscribed at start and again on every reconnection. */
  private readonly channels = new Set<string>();
  private started = false;

  constructor(o: FleetBusOptions) {
    this.o = o;
    this.node = o.node;
    this.nodesKey = `${o.prefix}nodes`;
    this.requests = `${o.prefix}rpc`;
    this.replies = `${o.prefix}reply:${o.node}`;
  }

  /** Subscribes, beats once, then every lease/3. Channels beyond the bus's own: `extra` (e.g. the state channel). */
  async start(extra: readonly string[]): Promise<void> {
    for (const c of extra) this.channels.add(c);
    this.started = true;
    this.o.subscriber.on('message', (channel: string, text: string) => this.onMessage(channel, text));
    const subscribe = () =>
      this.o.subscriber.subscribe(this.requests, this.replies, ...this.channels).catch((err: unknown) => {
        this.o.log.error({ err: (err as Error).message }, 'fleet: not subscribed (Redis unreachable); subscribing again when it answers');
      });
    // Again on every reconnection: a subscription that never succeeded is not restored by the client.
    this.o.subscriber.on('ready', () => void subscribe());
    await subscribe();
    await this.beat().catch(() => undefined);
    this.timer = setInterval(() => void this.beat().catch(() => undefined), Math.max(1000, Math.floor(this.o.leaseMs / 3)));
    this.timer.unref();
  }

  /** Answers `op` questions from other nodes (and this one). */
  handle(op: string, h: Handler): void {
    this.handlers.set(op, h);
  }

  /** Messages on another channel the bus subscribed to. */
  listen(channel: string, f: (message: Record<string, unknown>) => void): void {
    this.listeners.set(channel, f);
  }

  /**
   * Messages on a channel opened after start (the CrowdSec bouncer's):
   * subscribed now, and again with the rest after a reconnection.
   */
  async subscribe(channel: string, f: (message: Record<string, unknown>) => void): Promise<void> {
    this.listen(channel, f);
    this.channels.add(channel);
    if (this.started) await this.o.subscriber.subscribe(channel);
  }

  /** Nodes whose heartbeat is fresh. */
  async liveNodes(): Promise<string[]> {
    return this.o.client.zrangebyscore(this.nodesKey, Date.now(), '+inf');
  }

  /**
   * Asks every live node, this one included (answered locally, without
   * Redis); resolves with what came back before the deadline. With Redis
   * down, only this node answers, and the result says the fleet was not reached.
   */
  async ask<T>(op: string, args: unknown): Promise<FleetAnswers<T>> {
    const local = await this.answer(op, args);
    let nodes: string[];
    try {
      nodes = (await this.liveNodes()).filter((n) => n !== this.node);
    } catch {
      return { answers: new Map([[this.node, local as T]]), missing: ['(fleet unreachable)'] };
    }
    const answers = new Map<string, unknown>([[this.node, local]]);
    if (nodes.length === 0) return { answers: answers as Map<string, T>, missing: [] };
    const id = randomUUID();
    const waiting = new Set(nodes);
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    this.pending.set(id, { waiting, answers, done });
    const timer = setTimeout(done, this.o.answerTimeoutMs ?? 1000);
    try {
      await this.o.client.publish(this.requests, JSON.stringify({ id, from: this.node, op, args }));
      await finished;
    } catch {
      // not published: the others are unreachable
    } finally {
      clearTimeout(timer);
      this.pending.delete(id);
    }
    return { answers: answers as Map<string, T>, missing: [...waiting] };
  }

  /** Leaves the fleet's list of live nodes. */
  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.o.client.zrem(this.nodesKey, this.node).catch(() => undefined);
    await this.o.subscriber.quit().catch(() => this.o.subscriber.disconnect());
  }

  private async beat(): Promise<void> {
    const now = Date.now();
    await this.o.client.zadd(this.nodesKey, now + this.o.leaseMs, this.node);
    await this.o.client.zremrangebyscore(this.nodesKey, '-inf', now);
  }

  private async answer(op: string, args: unknown): Promise<unknown> {
    const h = this.handlers.get(op);
    if (h === undefined) return { error: `no handler for ${op}` };
    try {
      return await h(args);
    } catch (err) {
      return { error: (err as Error).message };
    }
  }

  private onMessage(channel: string, text: string): void {
    if (text.length > MAX_MESSAGE_BYTES) return;
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(text) as Record<string, unknown>;
    } catch {
      this.o.log.warn({ channel }, 'fleet: a message that is not JSON was ignored');
      return;
    }
    if (typeof m !== 'object' || m === null) return;
    if (channel === this.requests) {
      if (m['from'] === this.node || typeof m['id'] !== 'string' || typeof m['op'] !== 'string' || typeof m['from'] !== 'string') return;
      const { id, from, op, args } = m as { id: string; from: string; op: string; args: unknown };
      void this.answer(op, args).then((result) =>
        this.o.client.publish(`${this.o.prefix}reply:${from}`, JSON.stringify({ id, node: this.node, result })).catch((err: unknown) => {
          this.o.log.warn({ err: (err as Error).message, op, to: from }, 'fleet: answer not sent');
        }),
      );
      return;
    }
    if (channel === this.replies) {
      const p = typeof m['id'] === 'string' ? this.pending.get(m['id']) : undefined;
      const node = m['node'];
      if (p === undefined || typeof node !== 'string') return;
      p.answers.set(node, m['result']);
      p.waiting.delete(node);
      if (p.waiting.size === 0) p.done();
      return;
    }
    this.listeners.get(channel)?.(m);
  }
}
