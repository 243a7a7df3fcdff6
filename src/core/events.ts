/**
 * What happens at the door, as events: a connection admitted or closed, a
 * client refused, a login that failed, a kick. The admin API streams them (Server-Sent Events)
 * and the metrics count them; nothing here waits for a listener, and with
 * none attached an emit costs a Map lookup.
 */
import { EventEmitter } from 'node:events';
import type { ConnectionView } from './connections.js';
import type { Refusal } from './decision.js';

export interface RefusalEvent {
  readonly service: string;
  readonly address: string;
  readonly country: string | null;
  readonly rule: string;
  readonly reason: string;
  /** Which front-end refused: proxy, policy, dovecot, nginx, haproxy. */
  readonly by: string;
  /** The refusal whole (its cause, counts, retry-after, ban), for the refusal record behind `doorman why`. */
  readonly refusal: Refusal;
}

/** A login that failed (Dovecot's report), for whoever passes it on (CrowdSec's signals log). */
export interface AuthFailureEvent {
  readonly service: string;
  /** The client's address, canonical. */
  readonly address: string;
  /** Which front-end was told: dovecot. */
  readonly by: string;
}

export interface DoorEvents {
  connect: [ConnectionView];
  disconnect: [{ readonly id: string; readonly service: string; readonly address: string; readonly why: string; readonly bytesIn: number; readonly bytesOut: number }];
  refusal: [RefusalEvent];
  authFailure: [AuthFailureEvent];
  kick: [{ readonly target: string; readonly kicked: number; readonly ban: string | null; readonly reason: string }];
}

export class DoorEventBus extends EventEmitter<DoorEvents> {
  constructor() {
    super({ captureRejections: false });
    // Many SSE clients may listen; none is a leak.
    this.setMaxListeners(0);
  }
}
