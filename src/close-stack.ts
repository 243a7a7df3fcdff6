/**
 * What the daemon opened, closed in the reverse order: each part is pushed
 * as soon as it is open, and the same stack serves a start that fails half
 * way and stop(). Like fastify's onClose hooks (avvio): nobody keeps a
 * teardown list by hand, so no order can drift from the order of opening.
 */
import type { Logger } from 'pino';

export class CloseStack {
  private readonly parts: Array<{ readonly name: string; readonly close: () => unknown }> = [];
  private closing: Promise<void> | null = null;

  constructor(private readonly log: Logger) {}

  /** `close` runs once, at closeAll(), after everything pushed after it. */
  push(name: string, close: () => unknown): void {
    if (this.closing !== null) throw new Error(`${name} opened while the daemon is closing`);
    this.parts.push({ name, close });
  }

  /**
   * Closes every part, last opened first, each after the one before it has
   * finished. A part that fails is logged and the rest still close. Later
   * calls return the first call's promise.
   */
  closeAll(): Promise<void> {
    this.closing ??= (async () => {
      for (const p of [...this.parts].reverse()) {
        try {
          await p.close();
        } catch (err) {
          this.log.error({ err, part: p.name }, 'shutdown: could not close a part; closing the rest');
        }
      }
    })();
    return this.closing;
  }
}
