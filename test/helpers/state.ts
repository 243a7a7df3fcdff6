import { join } from 'node:path';

/** The `state` config section with both files in `dir`: in-process daemons must not share ./run. */
export function stateIn(dir: string): { file: string; audit_log: string } {
  return { file: join(dir, 'state.json'), audit_log: join(dir, 'audit.log') };
}

/** What every test daemon needs to run beside others: its own state files and an admin port of its own. */
export function isolated(dir: string): { state: { file: string; audit_log: string }; admin: { listen: string } } {
  return { state: stateIn(dir), admin: { listen: '127.0.0.1:0' } };
}
