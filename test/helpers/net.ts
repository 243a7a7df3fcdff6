/** Socket helpers shared by the test clients. */
import { connect, type Socket } from 'node:net';

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
