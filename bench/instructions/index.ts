/**
 * Instructions per decision, counted by callgrind: unlike wall-clock figures
 * on a shared 2-core machine (which moved by 20% between back-to-back runs
 * of the same build), the count of a V8 run with `--single-threaded
 * --predictable` repeats within about 1% (30,000 rounds) to 0.2% (100,000),
 * so it can tell a change of a few per cent in the hot path. Compares this build with another checkout's build
 * when BENCH_OTHER names one (e.g. a clone at the previous commit, built):
 *
 *   BENCH_OTHER=/tmp/base node dist/bench/run.js instructions
 *
 * Needs valgrind. Each build runs ./workload.ts twice under callgrind, with
 * BENCH_ROUNDS rounds (default 100,000) and with none; the difference over the
 * rounds is the figure. The two builds run at once, one per core (counts do
 * not depend on timing). BENCH_WORKLOAD=fronts runs ./fronts.ts instead: the
 * same round as bytes through the anvil and policy sessions, so what the
 * front-ends add per request is counted too. BENCH_WORKLOAD=guard runs
 * ./guard.ts: a client at the guard proxy's door, with the real country
 * database, refused there.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const VALGRIND = '/usr/bin/valgrind';
const HERE = fileURLToPath(new URL('.', import.meta.url));
const THIS_ROOT = resolve(HERE, '..', '..', '..');
/** A round takes a few µs natively and ~50x that under callgrind: 100,000 rounds is about 2.5 minutes. */
const RUN_TIMEOUT_MS = 20 * 60_000;

/** A workload's script, what its round is, and V8 flags of its own. */
interface Workload {
  readonly file: string;
  readonly round: string;
  readonly flags?: readonly string[];
}

/**
 * The round each run repeats: straight to the gatekeeper, through the
 * front-ends' sessions, or at the guard proxy's door. `flags`: V8 flags of
 * its own. The guard's heap holds the country database's reader and decode
 * cache, and V8's heap growing and memory reducer, which go by the clock,
 * moved its count by up to 7% between runs of one build; with their
 * schedule fixed (--predictable-gc-schedule) three runs of 30,000 rounds
 * agreed within 30 instructions a round (0.1%). The other two repeat within
 * 1% without it, and keep their figures comparable with those measured
 * before.
 */
const WORKLOADS: Record<string, Workload> = {
  gate: { file: 'workload.js', round: 'anvil connect, policy CONNECT check, one counted RCPT, disconnect' },
  fronts: { file: 'fronts.js', round: "the same as bytes through the anvil and policy services' sessions (framing, decoding, replies)" },
  guard: { file: 'guard.js', round: "a client accepted by the guard proxy, its country looked up in the embedded database, refused by a country rule in IMAP's words", flags: ['--predictable-gc-schedule'] },
};

function callgrind(root: string, rounds: number, out: string, workload: Workload): Promise<number> {
  return new Promise((resolveRun, reject) => {
    const args = ['--tool=callgrind', `--callgrind-out-file=${out}`, process.execPath, '--single-threaded', '--predictable', ...(workload.flags ?? []), join(HERE, workload.file), root, String(rounds)];
    execFile(VALGRIND, args, { timeout: RUN_TIMEOUT_MS, maxBuffer: 16 << 20 }, (err, _stdout, stderr) => {
      const m = /Collected : (\d+)/.exec(stderr);
      if (err || !m) reject(new Error(`callgrind on ${root} (${rounds} rounds) failed: ${err?.message ?? 'no total'}\n${stderr.slice(-2000)}`));
      else resolveRun(Number(m[1]));
    });
  });
}

async function perRound(root: string, rounds: number, dir: string, name: string, workload: Workload): Promise<number> {
  const [full, empty] = [await callgrind(root, rounds, join(dir, `${name}.full`), workload), await callgrind(root, 0, join(dir, `${name}.empty`), workload)];
  return (full - empty) / rounds;
}

export async function runInstructionsBench(): Promise<void> {
  if (!existsSync(VALGRIND)) throw new Error('instructions: valgrind is not installed (apt-get install valgrind)');
  const rounds = Number(process.env['BENCH_ROUNDS'] ?? 100_000);
  const other = process.env['BENCH_OTHER'];
  const name = process.env['BENCH_WORKLOAD'] ?? 'gate';
  const workload = WORKLOADS[name];
  if (workload === undefined) throw new Error(`instructions: BENCH_WORKLOAD=${name}; known: ${Object.keys(WORKLOADS).join(', ')}`);
  if (other !== undefined && !existsSync(join(other, 'dist', 'src', 'core', 'gate.js'))) throw new Error(`instructions: BENCH_OTHER=${other} has no build (run npx tsc -b there)`);
  const dir = await mkdtemp(join(tmpdir(), 'doorman-callgrind-'));
  try {
    process.stderr.write(`instructions: ${rounds} rounds (${name}) under callgrind${other ? `, this build and ${other} side by side` : ''}…\n`);
    const [mine, theirs] = await Promise.all([perRound(THIS_ROOT, rounds, dir, 'this', workload), other === undefined ? null : perRound(other, rounds, dir, 'other', workload)]);
    const lines = [
      '## Instructions per decision round (callgrind)',
      '',
      `A round (${name}): ${workload.round}; ${rounds} rounds, Node ${process.version} ${['--single-threaded', '--predictable', ...(workload.flags ?? [])].join(' ')}.`,
      '',
      '| Build | Instructions per round |',
      '|---|---:|',
      `| this (${THIS_ROOT}) | ${Math.round(mine).toLocaleString('en-US')} |`,
    ];
    if (theirs !== null) {
      lines.push(`| other (${other}) | ${Math.round(theirs).toLocaleString('en-US')} |`, '', `this / other: ${(mine / theirs).toFixed(3)}x`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
