/** Socket helpers shared by the test clients. */
import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * Connects over TCP with a deadline; errors name `what` and the address.
 * `localAddress` binds the client's side first: Linux loopback takes any
 * 127.x.y.z, so a test can be a client other than 127.0.0.1.
 */
export async function connectWithin(host: string, port: number, timeoutMs: number, what: string, localAddress?: string): Promise<Socket> {
  const socket = connect(localAddress === undefined ? { host, port } : { host, port, localAddress });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${what}: connect to ${host}:${port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(t);
      socket.removeListener('error', reject);
      resolve();
    });
    socket.once('error', (err) => {
      clearTimeout(t);
      reject(new Error(`${what}: connect to ${host}:${port}: ${err.message}`));
    });
  });
  return socket;
}

/** Listens on host:port exclusively (no port sharing between processes). */
export function listenOn(port: number, host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen({ port, host, exclusive: true }, () => resolve(srv));
  });
}

let ipv6: Promise<boolean> | undefined;
/** Whether ::1 can be bound here (containers sometimes disable IPv6). */
export function ipv6LoopbackWorks(): Promise<boolean> {
  ipv6 ??= listenOn(0, '::1').then(
    (srv) => new Promise<boolean>((resolve) => srv.close(() => resolve(true))),
    () => false,
  );
  return ipv6;
}

/**
 * `count` distinct ports that are free on every one of `addresses` right now.
 * All candidates stay bound until the last is found, so none repeats.
 */
export async function freePorts(count: number, addresses: readonly string[]): Promise<number[]> {
  const held: Server[] = [];
  const ports: number[] = [];
  try {
    while (ports.length < count) {
      if (held.length > 50) throw new Error(`no ${count} ports free on ${addresses.join(' and ')}`);
      const first = await listenOn(0, addresses[0]!);
      held.push(first);
      const port = (first.address() as { port: number }).port;
      let ok = true;
      for (const host of addresses.slice(1)) {
        try {
          held.push(await listenOn(port, host));
        } catch {
          ok = false; // taken on the other family; keep it held and pick again
          break;
        }
      }
      if (ok) ports.push(port);
    }
    return ports;
  } finally {
    await Promise.all(held.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}
