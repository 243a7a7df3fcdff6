/**
 * `npm run fuzz`: the codecs' properties (the same ones the *.fuzz.test.ts
 * unit tests run a few hundred times) run a million times each.
 *
 *   npm run fuzz                      every codec, 1,000,000 runs each
 *   npm run fuzz -- --runs 50000      fewer (or FUZZ_RUNS=50000)
 *   npm run fuzz -- --seed 42 proxy   one codec (by name substring), a fixed seed
 *   npm run fuzz -- --json out.json   the figures as JSON as well
 *
 * Each codec runs in a worker thread of its own, one after the other, so its
 * heap can be measured alone and a hang can be caught: the worker reports
 * its count through shared memory, and a count that stops moving for
 * STALL_MS ends the run as a hang. Any failure (an uncoded exception, a
 * broken round trip or cap, a hang, running out of heap) is printed with
 * fast-check's seed and counterexample and makes the exit status 1.
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { getHeapStatistics } from 'node:v8';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { CODECS } from './codecs.js';
import { runCodec } from './harness.js';

/** No input should take a second; a count that stands still this long is a hang. */
const STALL_MS = 60_000;
/** A codec that keeps more than this live is leaking (or buffering without a cap). */
const HEAP_LIMIT_MB = 1024;

interface Job {
  readonly codec: string;
  readonly runs: number;
  readonly seed: number;
  readonly progress: SharedArrayBuffer;
}

interface Done {
  readonly type: 'done';
  readonly inputs: number;
  /** By input kind and outcome ("mutated DOORMAN_ERR_…"). */
  readonly counts: Array<[string, number]>;
  /** By outcome alone, largest first. */
  readonly outcomes: Array<[string, number]>;
  readonly ms: number;
  readonly maxHeapMb: number;
}

interface Failed {
  readonly type: 'failed';
  readonly message: string;
}

async function work(job: Job): Promise<void> {
  const codec = CODECS.find((c) => c.name === job.codec);
  if (codec === undefined) throw new Error(`no codec ${job.codec}`);
  const progress = new Int32Array(job.progress);
  let maxHeap = 0;
  const sample = (inputs: number) => {
    Atomics.store(progress, 0, inputs);
    maxHeap = Math.max(maxHeap, getHeapStatistics().used_heap_size);
  };
  try {
    const r = await runCodec(codec, { numRuns: job.runs, seed: job.seed, onProgress: sample });
    sample(r.tally.inputs);
    const done: Done = { type: 'done', inputs: r.tally.inputs, counts: [...r.tally.counts], outcomes: r.tally.byOutcome(), ms: r.ms, maxHeapMb: maxHeap / 2 ** 20 };
    parentPort?.postMessage(done);
  } catch (err) {
    // runCodec's error wraps fast-check's report, whose cause is what the property threw.
    const thrown = err instanceof Error ? ((err.cause as Error | undefined)?.cause as Error | undefined) : undefined;
    const failed: Failed = { type: 'failed', message: err instanceof Error ? `${err.message}${thrown?.stack ? `\n\nthrown: ${thrown.stack}` : ''}` : String(err) };
    parentPort?.postMessage(failed);
  }
}

function runWorker(job: Job): Promise<Done | Failed> {
  return new Promise((resolve) => {
    const w = new Worker(new URL(import.meta.url), { workerData: job, resourceLimits: { maxOldGenerationSizeMb: HEAP_LIMIT_MB } });
    const progress = new Int32Array(job.progress);
    let last = -1;
    let lastChange = Date.now();
    let settled: Done | Failed | null = null;
    const timer = setInterval(() => {
      const now = Atomics.load(progress, 0);
      if (now !== last) {
        last = now;
        lastChange = Date.now();
        if (process.stderr.isTTY) process.stderr.write(`  ${job.codec}: ${now.toLocaleString('en')} inputs\r`);
      } else if (Date.now() - lastChange > STALL_MS) {
        settled = { type: 'failed', message: `hang: no input finished for ${STALL_MS / 1000} s after ${now} inputs (seed ${job.seed})` };
        void w.terminate();
      }
    }, 1000);
    w.on('message', (m: Done | Failed) => {
      settled = m;
      // The report is in; whatever the codec left running (a server's timers) need not be waited for.
      void w.terminate();
    });
    w.on('error', (err) => (settled ??= { type: 'failed', message: `worker died: ${err.stack ?? err.message}` }));
    w.on('exit', (code) => {
      clearInterval(timer);
      resolve(settled ?? { type: 'failed', message: `worker exited with ${code} and no report` });
    });
  });
}

function parseArgs(argv: readonly string[]): { runs: number; seed: number; only: string[]; json: string | null } {
  let runs = Number(process.env['FUZZ_RUNS'] ?? 1_000_000);
  let seed = Date.now() ^ (Math.random() * 2 ** 31);
  let json: string | null = null;
  const only: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--runs') runs = Number(argv[++i]);
    else if (a === '--seed') seed = Number(argv[++i]);
    else if (a === '--json') json = argv[++i] ?? null;
    else only.push(a);
  }
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs wants a whole number above 0, got ${runs}`);
  if (!Number.isInteger(seed)) throw new Error(`--seed wants an integer, got ${seed}`);
  return { runs, seed, only, json };
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

async function main(): Promise<void> {
  const { runs, seed, only, json } = parseArgs(process.argv.slice(2));
  const codecs = CODECS.filter((c) => only.length === 0 || only.some((o) => c.name.includes(o)));
  if (codecs.length === 0) throw new Error(`no codec matches ${only.join(', ')}; there are ${CODECS.map((c) => c.name).join(', ')}`);
  console.log(`fuzz: ${codecs.length} codecs, ${runs.toLocaleString('en')} runs each, seed ${seed}, node ${process.version}, ${availableParallelism()} cores`);
  const results: Array<{ codec: string } & (Done | Failed)> = [];
  const started = Date.now();
  for (const c of codecs) {
    const r = await runWorker({ codec: c.name, runs, seed, progress: new SharedArrayBuffer(4) });
    results.push({ codec: c.name, ...r });
    if (process.stderr.isTTY) process.stderr.write('\x1b[2K');
    if (r.type === 'failed') {
      console.log(`\n${c.name}: FAILED\n${r.message}\n`);
      continue;
    }
    console.log(`\n${c.name}: ${r.inputs.toLocaleString('en')} inputs in ${(r.ms / 1000).toFixed(1)} s (${((r.ms * 1000) / r.inputs).toFixed(1)} µs each), max heap ${r.maxHeapMb.toFixed(0)} MB`);
    for (const [outcome, n] of r.outcomes) console.log(`  ${pad(outcome, 48)} ${n.toLocaleString('en').padStart(11)}`);
  }
  const failed = results.filter((r) => r.type === 'failed');
  console.log(`\nfuzz: ${results.length - failed.length}/${results.length} codecs passed in ${((Date.now() - started) / 1000).toFixed(0)} s, seed ${seed}${failed.length > 0 ? `; FAILED: ${failed.map((r) => r.codec).join(', ')}` : ''}`);
  if (json !== null) writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), node: process.version, cores: availableParallelism(), runs, seed, results }, null, 2));
  process.exitCode = failed.length > 0 ? 1 : 0;
}

if (isMainThread) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
} else {
  void work(workerData as Job);
}
