/**
 * A client for the admin API in tests and benchmarks: JSON calls with
 * Node's fetch, and an event-stream reader that keeps every event and can
 * wait for one. Every wait is bounded.
 */

export interface ApiReply<T = any> {
  readonly status: number;
  readonly json: T;
  readonly headers: Headers;
}

export class AdminClient {
  readonly base: string;
  readonly headers: Record<string, string>;

  /** `token` null: no Authorization header. */
  constructor(port: number, token: string | null, host = '127.0.0.1') {
    this.base = `http://${host}:${port}`;
    this.headers = token === null ? {} : { authorization: `Bearer ${token}` };
  }

  async call<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = this.headers): Promise<ApiReply<T>> {
    const res = await fetch(this.base + path, {
      method,
      headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      redirect: 'manual',
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    let json: unknown = text;
    try {
      json = JSON.parse(text);
    } catch {
      // Not JSON (metrics, HTML): the text as it came.
    }
    return { status: res.status, json: json as T, headers: res.headers };
  }

  get<T = any>(path: string): Promise<ApiReply<T>> {
    return this.call<T>('GET', path);
  }

  /** Opens /api/events; resolves once the stream is open. */
  async events(): Promise<EventsClient> {
    const ac = new AbortController();
    const res = await fetch(`${this.base}/api/events`, { headers: this.headers, signal: ac.signal });
    return new EventsClient(res, ac);
  }
}

export interface StreamEvent {
  readonly event: string;
  readonly data: any;
}

export class EventsClient {
  readonly status: number;
  readonly contentType: string | null;
  readonly events: StreamEvent[] = [];
  /** Comment lines seen (": keep-alive"). */
  readonly comments: string[] = [];
  private readonly ac: AbortController;
  private waiters: Array<() => void> = [];

  constructor(res: Response, ac: AbortController) {
    this.status = res.status;
    this.contentType = res.headers.get('content-type');
    this.ac = ac;
    if (res.body !== null && res.status === 200) void this.read(res.body);
  }

  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
        buf += dec.decode(chunk, { stream: true });
        let end: number;
        while ((end = buf.indexOf('\n\n')) !== -1) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) this.comments.push(line);
            else if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length > 0) this.events.push({ event, data: JSON.parse(data.join('\n')) });
          this.notify();
        }
      }
    } catch {
      // Aborted by close().
    }
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** The first event (past or future) matching; rejects after timeoutMs with what arrived. */
  async waitFor(pred: (e: StreamEvent) => boolean, timeoutMs = 5000): Promise<StreamEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find(pred);
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no such event within ${timeoutMs} ms; got ${JSON.stringify(this.events)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.ac.abort();
  }
}
