/**
 * Writing a file so that a crash at any instant leaves either the old
 * content or the new, never a mix: write a temporary file beside it, fsync
 * it, rename it over the old one, fsync the directory so the rename itself
 * is on disk. A failed write (disk full, permissions) removes the temporary
 * file and throws, and the old file is untouched.
 */
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

let seq = 0;

export async function writeFileAtomic(path: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${++seq}.tmp`);
  let renamed = false;
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    renamed = true;
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } finally {
    if (!renamed) await rm(tmp, { force: true });
  }
}
