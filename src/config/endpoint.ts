/**
 * Listen and connect addresses as the configuration writes them, parsed in
 * one place: "127.0.0.1:8025", "[::1]:8025", "localhost:8025", or a UNIX
 * socket path ("/run/doorman/policy", "./run/anvil"). The schema has checked
 * their form; this only takes them apart.
 */

export interface HostPort {
  /** Without brackets: "::1", "127.0.0.1", "localhost". */
  readonly host: string;
  readonly port: number;
}

export interface Endpoint {
  readonly path?: string;
  readonly host?: string;
  readonly port?: number;
}

/** "HOST:PORT" or "[V6]:PORT" → host and port. */
export function parseHostPort(text: string): HostPort {
  const colon = text.lastIndexOf(':');
  return { host: text.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port: Number(text.slice(colon + 1)) };
}

/** "/run/x" or "./x" → a UNIX path; anything else is HOST:PORT. */
export function parseEndpoint(text: string): Endpoint {
  if (text.startsWith('/') || text.startsWith('./')) return { path: text };
  return parseHostPort(text);
}

/** An endpoint as an admin writes it again: brackets around an IPv6 host. */
export function describeEndpoint(e: Endpoint): string {
  return e.path ?? (e.host?.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`);
}
