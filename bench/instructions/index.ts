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

/** The round each run repeats: straight to the gatekeeper, or through the front-ends' sessions. */
const WORKLOADS: Record<string, { file: string; round: string }> = {
  gate: { file: 'workload.js', round: 'anvil connect, policy CONNECT check, one counted RCPT, disconnect' },
  fronts: { file: 'fronts.js', round: "the same as bytes through the anvil and policy services' sessions (framing, decoding, replies)" },
  guard: { file: 'guard.js', round: "a client accepted by the guard proxy, its country looked up in the embedded database, refused by a country rule in IMAP's words" },
};

function callgrind(root: string, rounds: number, out: string, workload: string): Promise<number> {
  return new Promise((resolveRun, reject) => {
    const args = ['--tool=callgrind', `--callgrind-out-file=${out}`, process.execPath, '--single-threaded', '--predictable', join(HERE, workload), root, String(rounds)];
    execFile(VALGRIND, args, { timeout: RUN_TIMEOUT_MS, maxBuffer: 16 << 20 }, (err, _stdout, stderr) => {
      const m = /Collected : (\d+)/.exec(stderr);
      if (err || !m) reject(new Error(`callgrind on ${root} (${rounds} rounds) failed: ${err?.message ?? 'no total'}\n${stderr.slice(-2000)}`));
      else resolveRun(Number(m[1]));
    });
  });
}

async function perRound(root: string, rounds: number, dir: string, name: string, workload: string): Promise<number> {
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
    const [mine, theirs] = await Promise.all([perRound(THIS_ROOT, rounds, dir, 'this', workload.file), other === undefined ? null : perRound(other, rounds, dir, 'other', workload.file)]);
    const lines = [
      '## Instructions per decision round (callgrind)',
      '',
      `A round (${name}): ${workload.round}; ${rounds} rounds, Node ${process.version} --single-threaded --predictable.`,
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
