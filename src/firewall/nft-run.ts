/**
 * One run of nft: `COMMAND… ARGS…` with a script on its standard input, a
 * deadline, and its output capped. One run per batch rather than a
 * long-lived `nft -i`: measured with nft 1.0.6 on a set of 50,000 elements,
 * each command costs the same ~0.45 s either way (nft reads the set's
 * elements into its cache for the overlap check before every command, in
 * `-i` too), while `-i` reports no outcome per command (an error is a line
 * on stderr, the exit status 0) and a process that hangs or dies would take
 * every later batch with it. With an empty set a run costs ~4 ms.
 */
import { spawn } from 'node:child_process';

/** What nft prints on failure is a few lines; a set listed with -t is one. */
const OUTPUT_MAX = 256 * 1024;

/** Runs `command` (argv, e.g. ["nft"] or ["ip", "netns", "exec", "NS", "nft"]) with `args`; resolves with stdout. */
export type NftRunner = (args: readonly string[], input: string) => Promise<string>;

export function nftRunner(command: readonly string[], timeoutMs: number): NftRunner {
  return (args, input) =>
    new Promise((resolve, reject) => {
      const [file, ...pre] = command as [string, ...string[]];
      const child = spawn(file, [...pre, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      let done = false;
      const finish = (e: Error | null): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (e === null) resolve(out);
        else reject(e);
      };
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        finish(new Error(`${command.join(' ')}: no answer in ${timeoutMs} ms; killed`));
      }, timeoutMs);
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        if (out.length < OUTPUT_MAX) out += d;
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        if (err.length < OUTPUT_MAX) err += d;
      });
      child.on('error', (e: NodeJS.ErrnoException) => finish(new Error(`cannot run ${command.join(' ')}: ${e.code ?? e.message}`)));
      child.on('close', (code, signal) => {
        if (code === 0) finish(null);
        else finish(new Error(`${command.join(' ')} ${args.join(' ')} exited ${code ?? signal}: ${firstLines(err)}`));
      });
      // A child that exits before reading everything (a syntax error) closes the pipe under us.
      child.stdin.on('error', () => undefined);
      child.stdin.end(input);
    });
}

/** nft's error: the message and the offending line, without the caret lines, on one line. */
function firstLines(s: string): string {
  const lines = s.split('\n').filter((l) => l.trim() !== '' && !/^\s*\^+\s*$/.test(l));
  const text = lines.slice(0, 4).join(' | ');
  return text.length > 600 ? `${text.slice(0, 600)}…` : text || '(nothing on stderr)';
}
