#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * The `doorman` command. `serve` runs the daemon; `config check` validates a
 * configuration with the same code the daemon uses and exits non-zero if it
 * is invalid.
 */
import { isIP } from 'node:net';
import { Command } from 'commander';
import { formatCheck, runCheck } from './check.js';
import { loadConfig } from '../config/load.js';
import { DoormanError } from '../errors.js';
import { startDaemon } from '../main.js';
import { createLogger } from '../observability/logger.js';

const program = new Command();
program.name('doorman').description('Connection doorman for mail servers').showHelpAfterError();

program
  .command('serve')
  .description('run every service the configuration enables (embedded defaults without a file)')
  .option('-c, --config <file>', 'configuration file (default: ./doorman.yaml if present)')
  .action(async (opts: { config?: string }) => {
    const config = loadOrExit(opts.config);
    const log = createLogger(config.log);
    log.info({ config: config.source, version: process.env.npm_package_version }, 'doorman starting');
    let daemon;
    try {
      daemon = await startDaemon(config, log);
    } catch (err) {
      log.fatal({ code: (err as DoormanError).code, err: (err as Error).message }, 'doorman could not start');
      process.exitCode = 1;
      return;
    }
    const d = daemon;
    let signals = 0;
    const shutdown = (signal: string) => {
      if (++signals > 1) {
        log.warn({ signal }, 'second signal: exiting at once');
        process.exit(1);
      }
      log.info({ signal }, 'shutting down');
      d.stop().then(
        () => {
          log.info('doorman stopped');
          process.exit(0);
        },
        (err: unknown) => {
          log.error({ err }, 'error during shutdown');
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    process.on('SIGINT', () => shutdown('SIGINT'));
    process.on('SIGHUP', () => log.warn('SIGHUP: configuration reload is not supported yet; running configuration kept'));
    process.on('uncaughtException', (err) => {
      log.fatal({ err }, 'uncaught exception: exiting');
      process.exit(70);
    });
    log.info({ anvil: config.anvil.enabled ? config.anvil.socket : null }, 'doorman ready');
  });

program
  .command('check')
  .description('show the country of an address and what each phase would decide for it, from the rules alone')
  .argument('<address>', 'client IP address')
  .requiredOption('-s, --service <name>', 'service whose rules apply (e.g. smtp, imap)')
  .option('-c, --config <file>', 'configuration file (default: ./doorman.yaml if present)')
  .option('--json', 'one JSON object instead of text')
  .action(async (address: string, opts: { service: string; config?: string; json?: boolean }) => {
    const config = loadOrExit(opts.config);
    if (!isIP(address)) {
      process.stderr.write(`doorman: ${JSON.stringify(address)} is not an IP address\n`);
      process.exit(2);
    }
    const r = await runCheck(config, address, opts.service);
    process.stdout.write(opts.json ? `${JSON.stringify(r)}\n` : formatCheck(r));
  });

const configCmd = program.command('config').description('configuration tools');
configCmd
  .command('check')
  .description('validate a configuration file and exit non-zero if it is invalid')
  .option('-c, --config <file>', 'configuration file (default: ./doorman.yaml if present)')
  .action((opts: { config?: string }) => {
    const config = loadOrExit(opts.config);
    process.stdout.write(`${config.source}: configuration is valid\n`);
  });

function loadOrExit(path: string | undefined) {
  try {
    return loadConfig(path);
  } catch (err) {
    if (err instanceof DoormanError) {
      process.stderr.write(`doorman: invalid configuration\n${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

await program.parseAsync(process.argv);
