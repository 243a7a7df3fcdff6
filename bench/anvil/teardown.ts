/**
 * Teardown that also runs on Ctrl-C, SIGTERM and uncaught errors: every
 * server the benchmark starts registers a synchronous stop here, so no
 * Doorman or Postfix outlives the run.
 */

type Stop = () => void;

const stops = new Map<number, { label: string; stop: Stop }>();
let seq = 0;
let installed = false;

/** Registers `stop`; returns a function that runs it once and unregisters it. */
export function onTeardown(label: string, stop: Stop): () => void {
  install();
  const id = ++seq;
  stops.set(id, { label, stop });
  return () => {
    const s = stops.get(id);
    if (s === undefined) return;
    stops.delete(id);
    s.stop();
  };
}

/** Runs every registered stop, newest first, logging (not throwing) failures. */
export function teardownAll(): void {
  for (const [id, s] of [...stops].reverse()) {
    stops.delete(id);
    try {
      s.stop();
    } catch (err) {
      process.stderr.write(`bench: teardown of ${s.label} failed: ${(err as Error).message}\n`);
    }
  }
}

function install(): void {
  if (installed) return;
  installed = true;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\nbench: ${sig}: stopping servers\n`);
      teardownAll();
      process.exit(130);
    });
  }
  process.on('exit', () => teardownAll());
}
