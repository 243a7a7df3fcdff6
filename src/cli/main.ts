#!/usr/bin/env -S MALLOC_TRIM_THRESHOLD_=134217728 node --max-semi-space-size=2
/**
 * The `doorman` command: registers each command (each in ./commands/) and
 * runs the one asked for.
 *
 * Exit codes, for every command: 0 done; 1 the daemon refused; 2 bad
 * arguments or configuration (commander's usage errors included); 3 no
 * daemon answered. Errors are one line on stderr, `doorman: …`.
 */
import { Command } from 'commander';
import { packageVersion } from '../version.js';
import { EXIT } from './admin-client.js';
import { registerBans } from './commands/bans.js';
import { registerCheck } from './commands/check.js';
import { registerConnections } from './commands/connections.js';
import { registerCountries } from './commands/countries.js';
import { registerKick } from './commands/kick.js';
import { registerReload } from './commands/reload.js';
import { registerServe } from './commands/serve.js';
import { registerStatus } from './commands/status.js';
import { registerWhy } from './commands/why.js';

const program = new Command();
// Set before any command is added: subcommands copy these settings when created.
program
  .name('doorman')
  .description('Connection doorman for mail servers')
  // exitOverride below turns commander's exit after printing it into exit 0.
  .version(packageVersion(), '-V, --version', 'print the version and exit')
  .configureOutput({ outputError: (text, write) => write(`doorman: ${text.replace(/^error: /, '').trimEnd()} (see --help)\n`) })
  .exitOverride((err) => process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.usage));

registerServe(program);
registerStatus(program);
registerConnections(program);
registerKick(program);
registerBans(program);
registerCountries(program);
registerCheck(program);
registerWhy(program);
registerReload(program);

// `doorman bans | head` closes stdout early: that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(EXIT.ok);
  throw err;
});

await program.parseAsync(process.argv);
