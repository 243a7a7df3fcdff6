import assert from 'node:assert/strict';
import { test } from 'node:test';
import { memoryLogger } from '../test/helpers/log.js';
import { CloseStack } from './close-stack.js';

test('parts close last-opened first, each once, and a failing one does not stop the rest', async () => {
  const { log, lines } = memoryLogger();
  const s = new CloseStack(log);
  const order: string[] = [];
  s.push('store', () => order.push('store'));
  s.push('audit', async () => {
    await new Promise((r) => setTimeout(r, 5));
    order.push('audit');
  });
  s.push('proxy', () => {
    order.push('proxy');
    throw new Error('already closed');
  });
  s.push('admin', () => order.push('admin'));
  await Promise.all([s.closeAll(), s.closeAll()]);
  await s.closeAll();
  assert.deepEqual(order, ['admin', 'proxy', 'audit', 'store']);
  assert.ok(lines.some((l) => l['part'] === 'proxy' && /could not close a part/.test(String(l['msg']))));
  assert.throws(() => s.push('late', () => {}), /while the daemon is closing/);
});
