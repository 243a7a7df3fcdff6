import { join } from 'node:path';

/** The `state` config section with both files in `dir`: in-process daemons must not share ./run. */
export function stateIn(dir: string): { file: string; audit_log: string } {
  return { file: join(dir, 'state.json'), audit_log: join(dir, 'audit.log') };
}
