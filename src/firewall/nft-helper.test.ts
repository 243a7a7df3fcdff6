/**
 * The nft helper as the daemon runs it: the real program
 * (dist/src/firewall/nft-helper.js, started by NftHelper as the daemon
 * starts it), with a shell script standing in for nft that records how it
 * was run. The real nft, as root in a network namespace, is
 * test/integration/firewall-run-as.test.ts's.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import pino from 'pino';
import { encodeFrame, FrameDecoder, type HelperOptions } from './helper-frames.js';
import { HELPER_SCRIPT, NftHelper } from './nft-helper-client.js';

const dir = mkdtempSync(join(tmpdir(), 'doorman-nft-helper-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const RUNS = join(dir, 'runs.log');
const FAKE = join(dir, 'fake-nft.sh');
// Records its arguments, answers with them and its input; a marker address makes it fail, hang or dawdle.
writeFileSync(
  FAKE,
  `log=$1; shift
input=$(cat)
printf '%s\\n' "$*" >> "$log"
case "$input" in
  *192.0.2.13*) echo "Error: Could not process rule: No such file or directory" >&2; exit 1;;
  *192.0.2.14*) exec sleep 5;;
  *192.0.2.15*) sleep 0.2;;
esac
printf 'argv:%s\\n%s' "$*" "$input"
`,
);
const log = pino({ level: 'silent' });
const opts = (o: Partial<HelperOptions> = {}): HelperOptions => ({ table: 'inet filter', v4: 'doorman_v4', v6: 'doorman_v6', command: ['/bin/sh', FAKE, RUNS], timeoutMs: 5000, ...o });
const runs = () => (existsSync(RUNS) ? readFileSync(RUNS, 'utf8').trim().split('\n').filter((l) => l !== '') : []);

async function started(o?: Partial<HelperOptions>) {
  const h = await NftHelper.start(opts(o), log);
  return h;
}

test("the writer's scripts go to nft -f - on its input, the listing as nft's arguments, and nft's output comes back", async () => {
  const h = await started();
  try {
    const before = runs().length;
    const script = 'flush set inet filter doorman_v4\nadd element inet filter doorman_v4 { 192.0.2.1 timeout 1h }\n';
    assert.equal(await h.run(['-f', '-'], script), `argv:-f -\n${script.trimEnd()}`);
    assert.equal(await h.run(['-j', '-t', 'list', 'set', 'inet', 'filter', 'doorman_v6'], ''), 'argv:-j -t list set inet filter doorman_v6\n');
    assert.deepEqual(runs().slice(before), ['-f -', '-j -t list set inet filter doorman_v6']);
  } finally {
    assert.equal(await h.close(), 0, 'input closed: the helper exits 0');
  }
});

test('a script off the whitelist is refused with its reason and never reaches nft; the helper serves on', async () => {
  const h = await started();
  try {
    const before = runs().length;
    for (const [script, why] of [
      ['flush ruleset\n', /^the nft helper refused the script: line 1 "flush ruleset": not flush set, add element, delete element or list set$/],
      ['flush set inet filter doorman_v4\nadd rule inet filter input drop\n', /^the nft helper refused the script: line 2 "add rule inet filter input drop": not flush set/],
      ['add element inet filter doorman_v4 { 192.0.2.1 timeout 1h }; flush ruleset\n', /no \{ element, … \} after the set name/],
      ['flush set inet filter other\n', /not one of the sets doorman_v4, doorman_v6/],
    ] as const) {
      await assert.rejects(h.request(script), (e: Error) => why.test(e.message));
    }
    assert.equal(runs().length, before, 'nft was never run');
    assert.match(await h.run(['-f', '-'], 'flush set inet filter doorman_v6\n'), /^argv:-f -/);
    // Asked for something other than a script or the listing, the client does not even send it.
    await assert.rejects(h.run(['-i'], ''), /the nft helper runs scripts \(nft -f -\) and the set listing, not nft -i/);
    await assert.rejects(h.run(['-j', '-t', 'list', 'set', 'inet', 'filter', 'doorman_v4'], 'x'), /not nft -j -t list set/);
  } finally {
    await h.close();
  }
});

test("nft's failure, a missing nft and a hung one (killed at the deadline) come back as errors; the helper serves on", async () => {
  const h = await started({ timeoutMs: 300 });
  try {
    await assert.rejects(h.run(['-f', '-'], 'add element inet filter doorman_v4 { 192.0.2.13 timeout 1h }\n'), /exited 1: Error: Could not process rule: No such file or directory/);
    await assert.rejects(h.run(['-f', '-'], 'add element inet filter doorman_v4 { 192.0.2.14 timeout 1h }\n'), /no answer in 300 ms; killed/);
    assert.match(await h.run(['-f', '-'], 'flush set inet filter doorman_v4\n'), /^argv:-f -/);
  } finally {
    await h.close();
  }
  const missing = await started({ command: ['/nonexistent/nft'] });
  try {
    // The start-up check reads "cannot run" as a wrong firewall.nft.command.
    await assert.rejects(missing.run(['-j', '-t', 'list', 'set', 'inet', 'filter', 'doorman_v4'], ''), /^Error: cannot run \/nonexistent\/nft: ENOENT$/);
  } finally {
    await missing.close();
  }
});

test('closed while nft runs, the helper answers that run, then exits', async () => {
  const h = await started();
  const answer = h.run(['-f', '-'], 'add element inet filter doorman_v4 { 192.0.2.15 timeout 1h }\n');
  const closed = h.close();
  assert.match(await answer, /192\.0\.2\.15/);
  assert.equal(await closed, 0);
});

test('a helper that dies fails the run in hand and every later one at once, saying so', async () => {
  const h = await started({ timeoutMs: 60_000 });
  const hung = h.run(['-f', '-'], 'add element inet filter doorman_v4 { 192.0.2.14 timeout 1h }\n');
  process.kill(h.pid as number, 'SIGKILL');
  const gone = /^the nft helper \(pid \d+\) exited SIGKILL; the nftables sets are not written until Doorman restarts$/;
  await assert.rejects(hung, (e: Error) => gone.test(e.message));
  await assert.rejects(h.run(['-f', '-'], 'flush set inet filter doorman_v4\n'), (e: Error) => gone.test(e.message));
  await h.close();
});

test("SIGTERM and SIGINT, which systemd's stop and ^C send the whole group, are left to the daemon: the helper serves on until its input closes", async () => {
  const h = await started();
  process.kill(h.pid as number, 'SIGTERM');
  process.kill(h.pid as number, 'SIGINT');
  process.kill(h.pid as number, 'SIGHUP');
  assert.match(await h.run(['-f', '-'], 'flush set inet filter doorman_v4\n'), /^argv:-f -/);
  assert.equal(await h.close(), 0);
});

/** The helper run by hand: raw bytes in, its exit code and standard error out. */
function raw(input: Buffer | null, args: string[] = [JSON.stringify(opts())]): Promise<{ code: number | null; stderr: string; frames: unknown[] }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [HELPER_SCRIPT, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    const frames: unknown[] = [];
    const d = new FrameDecoder(1 << 20);
    child.stdout.on('data', (c: Buffer) => frames.push(...d.push(c)));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('close', (code) => resolve({ code, stderr, frames }));
    child.stdin.on('error', () => undefined);
    if (input !== null) child.stdin.write(input);
    // The input stays open: the helper must leave on its own.
  });
}

test('a protocol error ends the helper at once, with exit code 2 and the reason on standard error', async () => {
  const huge = await raw(Buffer.from([0xff, 0xff, 0xff, 0xff]));
  assert.equal(huge.code, 2);
  assert.match(huge.stderr, /^doorman nft helper: protocol error: a frame of 4294967295 bytes \(allowed: 1 to 67108864\); exiting$/m);
  assert.deepEqual(huge.frames, [{ hello: 'doorman-nft-helper', version: 1, pid: (huge.frames[0] as { pid: number }).pid }], 'it greeted, then answered nothing');
  const notRequest = await raw(encodeFrame({ id: 1, script: 'flush set inet filter doorman_v4\n', args: ['-i'] }));
  assert.equal(notRequest.code, 2);
  assert.match(notRequest.stderr, /protocol error: a frame that is not a request \{id, script\}; exiting/);
  const notJson = await raw(Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from('{{{')]));
  assert.equal(notJson.code, 2);
  assert.match(notJson.stderr, /a frame of 3 bytes that is not JSON/);
});

test('without its options, or with options off the schema, the helper refuses to start', async () => {
  for (const args of [[], ['{}'], ['not json'], [JSON.stringify({ ...opts(), table: 'inet filter; flush ruleset' })]]) {
    const r = await raw(null, args);
    assert.equal(r.code, 2, JSON.stringify(args));
    assert.match(r.stderr, /started without its options/);
    assert.deepEqual(r.frames, []);
  }
});

test('a helper that cannot start, exits before its hello, or greets wrongly is a start failure saying why', async () => {
  await assert.rejects(NftHelper.start(opts(), log, ['/nonexistent/node']), /^Error: cannot run \/nonexistent\/node: ENOENT$/);
  await assert.rejects(NftHelper.start(opts(), log, ['/bin/sh', '-c', 'echo "no nft helper here" >&2; exit 3']), /exited 3 before it greeted: no nft helper here$/);
  await assert.rejects(NftHelper.start(opts(), log, ['/bin/sh', '-c', 'printf "\\0\\0\\0\\2{}"; exec sleep 30']), /did not greet as the nft helper$/);
});
