/**
 * The yardstick the issue names: a bare Node relay, as little as a relay can
 * be (accept, connect to the backend, PROXY v2 header, `pipe` both ways, no
 * checks, no registry, no limits), run as its own process with the daemon's
 * Node flags and environment so that the two differ only in what Doorman
 * adds. Doorman / this relay is what the guard's own work costs.
 *
 * `node dist/bench/proxy/node-relay.js BACKEND_PORT` prints {"port": N}.
 */
import { connect, createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../src/cli/node-flags.js';
import { encodeProxyV2 } from '../../src/protocols/proxy-protocol.js';
import { leashToStdin, spawnHelper } from './child.js';

function relay(backendPort: number): Server {
  return createServer({ noDelay: true }, (client) => {
    const backend = connect({ port: backendPort, host: '127.0.0.1', noDelay: true });
    const both = () => {
      client.destroy();
      backend.destroy();
    };
    client.on('error', both);
    backend.on('error', both);
    backend.write(encodeProxyV2(client.remoteAddress ?? '', client.remotePort ?? 0, client.localAddress ?? '', client.localPort ?? 0));
    client.pipe(backend);
    backend.pipe(client);
  });
}

export class NodeRelayProcess {
  private constructor(
    readonly pid: number,
    readonly port: number,
    private readonly unregister: () => void,
  ) {}

  static async start(backendPort: number): Promise<NodeRelayProcess> {
    const s = await spawnHelper<{ port: number }>('node relay', [...DAEMON_NODE_FLAGS, fileURLToPath(import.meta.url), String(backendPort)], { ...process.env, ...DAEMON_ENV });
    return new NodeRelayProcess(s.child.pid as number, s.ready.port, s.unregister);
  }

  stop(): void {
    this.unregister();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const server = relay(Number(process.argv[2]));
  server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => {
    leashToStdin();
    const a = server.address();
    process.stdout.write(`${JSON.stringify({ port: typeof a === 'object' && a !== null ? a.port : 0 })}\n`);
  });
}
