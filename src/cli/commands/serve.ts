/**
 * `doorman serve` runs the daemon; `doorman config check` validates a
 * configuration with the code the daemon uses. The daemon's modules load
 * only for `serve`, so the commands that talk to it start quickly.
 */
import type { Command } from 'commander';
import { isAbsolute } from 'node:path';
import { clientConfigPath, loadConfig, PACKAGED_CONFIG_FILE, type Config } from '../../config/load.js';
import { ConfigError, DoormanError } from '../../errors.js';
import { EXIT } from '../admin-client.js';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run every service the configuration enables (embedded defaults without a file)')
    .option('-c, --config <file>', 'configuration file (default: ./doorman.yaml if present)')
    .action(async (opts: { config?: string }) => {
      const config = loadOrExit(opts.config);
      workingDirectoryOrExit(config);
      const [{ startDaemon }, { createLogger }, { dropPrivileges }] = await Promise.all([import('../../main.js'), import('../../observability/logger.js'), import('../../privileges.js')]);
      const log = createLogger(config.log);
      log.info({ config: config.source, version: process.env.npm_package_version }, 'doorman starting');
      // Until the daemon is up a SIGHUP (whose default is to exit) only says so.
      let reloadFile: ((by: string) => Promise<string[]>) | null = null;
      process.on('SIGHUP', () => {
        if (reloadFile === null) {
          log.warn('SIGHUP before the daemon was ready: ignored');
          return;
        }
        reloadFile('SIGHUP').catch((err: unknown) => {
          const e = err as DoormanError;
          log.error({ code: e.code, err: e.message }, 'SIGHUP: configuration not reloaded; the running configuration stays');
        });
      });
      let daemon;
      try {
        daemon = await startDaemon(config, log);
      } catch (err) {
        log.fatal({ code: (err as DoormanError).code, err: (err as Error).message }, 'doorman could not start');
        process.exitCode = 1;
        return;
      }
      const d = daemon;
      try {
        const dropped = await dropPrivileges(config, log);
        if (dropped !== null) log.info({ user: config.run_as.user, uid: dropped.uid, gid: dropped.gid }, 'root given up: running as an unprivileged user');
      } catch (err) {
        log.fatal({ code: (err as DoormanError).code, err: (err as Error).message }, 'doorman will not run this way');
        await d.stop();
        process.exitCode = 1;
        return;
      }
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
      reloadFile = (by) => d.reloadFile(by);
      process.on('uncaughtException', (err) => {
        log.fatal({ err }, 'uncaught exception: exiting');
        process.exit(70);
      });
      log.info({ anvil: config.anvil.enabled ? config.anvil.socket : null }, 'doorman ready');
    });

  const configCmd = program.command('config').description('configuration tools');
  configCmd
    .command('check')
    .description('validate a configuration file as serve would, run by this user, and exit non-zero if it is invalid')
    .option('-c, --config <file>', `configuration file (default: ./doorman.yaml if present, else ${PACKAGED_CONFIG_FILE} if readable)`)
    .action(async (opts: { config?: string }) => {
      const config = loadOrExit(clientConfigPath(opts.config));
      // What serve refuses at start for the configuration's sake, refused here in the same words: run_as, as this user.
      const { checkRunAs } = await import('../../privileges.js');
      try {
        checkRunAs(config, process.getuid?.() ?? -1);
      } catch (err) {
        if (!(err instanceof DoormanError)) throw err;
        process.stderr.write(`doorman: invalid configuration\n${err.message}\n`);
        process.exit(EXIT.usage);
      }
      process.stdout.write(`${config.source}: configuration is valid\n`);
    });
}

/**
 * A working directory removed under the daemon (a package upgrade, a
 * cleaned-up home) makes every relative path unresolvable, and some
 * dependencies read it as they load and crash with a bare uv_cwd stack:
 * refuse plainly instead, naming the relative state paths it breaks.
 */
function workingDirectoryOrExit(config: Config): void {
  try {
    process.cwd();
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    const expected = `a path Doorman can resolve: the working directory no longer exists (${code}); use an absolute path or start from an existing directory (systemd: WorkingDirectory=)`;
    const keys = (['file', 'audit_log'] as const).filter((k) => !isAbsolute(config.state[k]));
    const issues = keys.map((k) => ({ file: config.source, key: `state.${k}`, value: config.state[k], expected }));
    const message = issues.length > 0 ? new ConfigError(issues).message : `the working directory no longer exists (${code}); start from an existing directory`;
    process.stderr.write(`doorman: cannot start\n${message}\n`);
    process.exit(1);
  }
}

function loadOrExit(path: string | undefined) {
  try {
    return loadConfig(path);
  } catch (err) {
    if (err instanceof DoormanError) {
      process.stderr.write(`doorman: invalid configuration\n${err.message}\n`);
      process.exit(EXIT.usage);
    }
    throw err;
  }
}
