/**
 * Doorman's SPOE agent alone, driven by stand-ins for HAProxy
 * (test/helpers/spop-client.ts): C connections, each sending W NOTIFY frames
 * in one write and waiting for their W ACKs before the next write. Doorman's
 * CPU per decision as a function of how many frames it gets per read: what a
 * decision costs once a wake-up, a read and a write are shared by W of them.
 */
import type { DoormanProcess } from '../anvil/doorman.js';
import { cpuTimeUs } from '../anvil/proc.js';
import { encodeNotify } from '../../src/protocols/spop-messages.js';
import { FakeHaproxy, clientArgs } from '../../test/helpers/spop-client.js';

export interface AloneRun {
  readonly connections: number;
  readonly framesPerWrite: number;
  readonly decisionsPerSec: number;
  readonly doormanUsPerDecision: number;
  /** Doorman's share of a core. */
  readonly doormanShare: number;
}

/** The (connections, frames per write) pairs measured. */
export const ALONE_SHAPES: ReadonlyArray<readonly [number, number]> = [
  [1, 1],
  [8, 1],
  [8, 4],
  [4, 16],
];

export async function agentAlone(d: DoormanProcess, agentPort: number, connections: number, framesPerWrite: number, durationMs: number): Promise<AloneRun> {
  const conns = await Promise.all(Array.from({ length: connections }, () => FakeHaproxy.ready(agentPort)));
  const args = clientArgs('127.0.0.1', 'smtp');
  let stop = false;
  let done = 0;
  let sid = 1;
  const loops = conns.map(async (h) => {
    while (!stop) {
      const frames: Buffer[] = [];
      for (let i = 0; i < framesPerWrite; i++) frames.push(encodeNotify({ streamId: sid++, frameId: 1, messages: [{ name: 'doorman-client', args }] }, 16380));
      h.send(Buffer.concat(frames));
      for (let i = 0; i < framesPerWrite; i++) await h.next(5000);
      done += framesPerWrite;
    }
  });
  try {
    // A short warm-up, then the window.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const c0 = cpuTimeUs(d.pid);
    const n0 = done;
    const t0 = performance.now();
    await new Promise((resolve) => setTimeout(resolve, durationMs));
    const us = cpuTimeUs(d.pid) - c0;
    const n = done - n0;
    const wallUs = (performance.now() - t0) * 1000;
    return { connections, framesPerWrite, decisionsPerSec: (n * 1e6) / wallUs, doormanUsPerDecision: n === 0 ? NaN : us / n, doormanShare: us / wallUs };
  } finally {
    stop = true;
    await Promise.allSettled(loops);
    for (const h of conns) h.destroy();
  }
}
