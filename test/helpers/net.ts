/** Socket helpers shared by the test clients. */
import { connect, type Socket } from 'node:net';

/** Connects over TCP with a deadline; errors name `what` and the address. */
export async function connectWithin(host: string, port: number, timeoutMs: number, what: string): Promise<Socket> {
  const socket = connect({ host, port });
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
