/**
 * GET /api/events: what happens at the door, as Server-Sent Events.
 *
 *   event: connect      data: Connection
 *   event: disconnect   data: {"id","service","address","why","bytes_in","bytes_out"}
 *   event: refusal      data: {"service","address","country","rule","reason","by"}
 *   event: kick         data: {"target","kicked","ban","reason"}
 *   : keep-alive        (a comment every 15 s, so proxies and browsers keep the stream)
 *
 * The bus is listened to once for all clients, and only while there is a
 * client: each event is serialized once and written to every stream, and
 * with no client the front-ends' emits stay a Map lookup. Caps: at most
 * MAX_CLIENTS streams (more get 503); a client that stops reading is cut off
 * once MAX_BUFFERED bytes wait for it (an EventSource reconnects by itself)
 * rather than growing the daemon's memory.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { DoorEventBus, DoorEvents } from '../../core/events.js';
import { HttpError } from '../../errors.js';
import { connectionJson, disconnectJson } from './shapes.js';

export interface EventStreamOptions {
  /** Dashboards and `doorman watch` sessions at once; each costs a socket and a write per event. */
  readonly maxClients?: number;
  readonly keepAliveMs?: number;
  /** Bytes queued for one slow client before it is cut off: about a thousand events. */
  readonly maxBuffered?: number;
}

type Listener<K extends keyof DoorEvents> = (...args: DoorEvents[K]) => void;

export class EventStream {
  private readonly bus: DoorEventBus;
  private readonly log: Logger;
  private readonly clients = new Set<ServerResponse>();
  private readonly maxClients: number;
  private readonly keepAliveMs: number;
  private readonly maxBuffered: number;
  private keepAlive: NodeJS.Timeout | null = null;
  /** Failed logins are not streamed: the dashboard shows refusals (and a ban, when failures lead to one). */
  private readonly listeners: { [K in Exclude<keyof DoorEvents, 'authFailure'>]: Listener<K> };

  constructor(bus: DoorEventBus, log: Logger, opts: EventStreamOptions = {}) {
    this.bus = bus;
    this.log = log;
    this.maxClients = opts.maxClients ?? 64;
    this.keepAliveMs = opts.keepAliveMs ?? 15_000;
    this.maxBuffered = opts.maxBuffered ?? 1024 * 1024;
    this.listeners = {
      connect: (c) => this.broadcast('connect', connectionJson(c, Date.now())),
      disconnect: (e) => this.broadcast('disconnect', disconnectJson(e)),
      refusal: (e) => this.broadcast('refusal', { service: e.service, address: e.address, country: e.country, rule: e.rule, reason: e.reason, by: e.by }),
      kick: (e) => this.broadcast('kick', { target: e.target, kicked: e.kicked, ban: e.ban, reason: e.reason }),
    };
  }

  /** Streams currently open. */
  get size(): number {
    return this.clients.size;
  }

  /** The route handler: takes the response over and keeps it open until the client goes. */
  open(req: FastifyRequest, reply: FastifyReply): void {
    if (this.clients.size >= this.maxClients) {
      throw new HttpError('DOORMAN_ERR_TOO_MANY_STREAMS', `already ${this.maxClients} event streams open; close one and retry`);
    }
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      // nginx and friends would otherwise buffer the stream.
      'x-accel-buffering': 'no',
    });
    // Sent at once, so the client sees the stream open before the first event.
    res.write(': connected\n\n');
    if (this.clients.size === 0) this.attach();
    this.clients.add(res);
    const gone = () => this.drop(res);
    res.once('close', gone);
    req.raw.once('close', gone);
  }

  /** Ends every stream (the server is closing). */
  closeAll(): void {
    for (const res of [...this.clients]) {
      this.drop(res);
      res.end();
    }
  }

  private attach(): void {
    for (const [name, fn] of Object.entries(this.listeners)) this.bus.on(name as keyof DoorEvents, fn as never);
    this.keepAlive = setInterval(() => this.write(': keep-alive\n\n'), this.keepAliveMs);
    this.keepAlive.unref();
  }

  private detach(): void {
    for (const [name, fn] of Object.entries(this.listeners)) this.bus.off(name as keyof DoorEvents, fn as never);
    if (this.keepAlive !== null) clearInterval(this.keepAlive);
    this.keepAlive = null;
  }

  private drop(res: ServerResponse): void {
    if (!this.clients.delete(res)) return;
    if (this.clients.size === 0) this.detach();
  }

  private broadcast(event: string, data: unknown): void {
    this.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  private write(chunk: string): void {
    for (const res of this.clients) {
      if (res.writableLength > this.maxBuffered) {
        this.log.warn({ buffered: res.writableLength }, 'admin API: an event-stream client stopped reading; cut off');
        this.drop(res);
        res.destroy();
        continue;
      }
      res.write(chunk);
    }
  }
}
