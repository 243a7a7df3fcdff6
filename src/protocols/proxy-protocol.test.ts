import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { encodeProxyHeader } from '../../test/helpers/mail-clients.js';
import { ProtocolError } from '../errors.js';
import { PROXY_HEADER_MAX, ProxyHeaderParser, encodeProxyV1, encodeProxyV2, type ParseResult } from './proxy-protocol.js';

/** Feeds the bytes in pieces until the header is done; `rest` then holds everything after it. */
function parseSplit(bytes: Buffer, cuts: number[]): ParseResult {
  const p = new ProxyHeaderParser();
  let last = 0;
  for (const c of [...cuts, bytes.length]) {
    const r = p.write(bytes.subarray(last, c));
    last = c;
    if (r.done) return { ...r, rest: Buffer.concat([r.rest, bytes.subarray(last)]) };
  }
  return { done: false };
}

const CASES: Array<[string, number, string, number]> = [
  ['203.0.113.7', 40000, '127.0.0.1', 143],
  ['2001:db8::7', 1, '::1', 110],
  ['0.0.0.0', 0, '255.255.255.255', 65535],
  ['2001:db8:1:2:3:4:5:6', 65535, '2001:db8::', 25],
];

test('v1 and v2 round-trip, with the bytes after the header kept, at every split', () => {
  for (const [src, sport, dst, dport] of CASES) {
    for (const enc of [encodeProxyV1, encodeProxyV2]) {
      const header = enc(src, sport, dst, dport);
      const bytes = Buffer.concat([header, Buffer.from('A1 LOGIN alice secret\r\n')]);
      for (let i = 0; i <= header.length; i++) {
        const r = parseSplit(bytes, i === 0 ? [] : [i]);
        assert.ok(r.done, `${enc.name} ${src} split ${i}`);
        assert.deepEqual(r.header.source, { address: src, port: sport });
        assert.deepEqual(r.header.destination, { address: dst, port: dport });
        assert.equal(r.rest.toString(), 'A1 LOGIN alice secret\r\n');
      }
    }
  }
});

test('headers from the test clients\' own encoder (which real Dovecot accepted) decode the same', () => {
  for (const version of [1, 2] as const) {
    for (const [source, sourcePort, dest, destPort] of [['203.0.113.7', 40000, '127.0.0.1', 143], ['2001:db8::7', 40001, '::1', 110]] as const) {
      const r = new ProxyHeaderParser().write(encodeProxyHeader({ version, source, sourcePort, dest, destPort }, destPort));
      assert.ok(r.done);
      assert.equal(r.header.version, version);
      assert.deepEqual(r.header.source, { address: source, port: sourcePort });
      assert.deepEqual(r.header.destination, { address: dest, port: destPort });
    }
  }
});

test('mixed families are sent as IPv6 with the IPv4 mapped', () => {
  const r = new ProxyHeaderParser().write(encodeProxyV2('192.0.2.1', 5, '2001:db8::1', 25));
  assert.ok(r.done);
  assert.equal(r.header.source?.address, '::ffff:c000:201');
  assert.equal(new ProxyHeaderParser().write(encodeProxyV1('192.0.2.1', 5, '2001:db8::1', 25)).done, true);
});

test('UNKNOWN and LOCAL say: use the connection\'s own addresses', () => {
  const unknown = new ProxyHeaderParser().write(Buffer.from('PROXY UNKNOWN\r\nrest'));
  assert.ok(unknown.done && !unknown.header.proxied && unknown.rest.toString() === 'rest');
  const local = encodeProxyV2('192.0.2.1', 1, '192.0.2.2', 2);
  local[12] = 0x20;
  const r = new ProxyHeaderParser().write(local);
  assert.ok(r.done && !r.header.proxied);
});

function refused(bytes: Buffer | string, code: string): void {
  assert.throws(
    () => new ProxyHeaderParser().write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes),
    (e: unknown) => e instanceof ProtocolError && e.code === code,
    JSON.stringify(bytes.toString().slice(0, 40)),
  );
}

test('refused: no header, malformed v1, bad v2, over the cap', () => {
  refused('EHLO example.org\r\n', 'DOORMAN_ERR_PROXY_MISSING');
  refused('* OK hello\r\n', 'DOORMAN_ERR_PROXY_MISSING');
  refused('PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n', 'DOORMAN_ERR_PROXY_V1');
  refused('PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n', 'DOORMAN_ERR_PROXY_V1');
  refused('PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n', 'DOORMAN_ERR_PROXY_V1');
  refused('PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n', 'DOORMAN_ERR_PROXY_V1');
  refused('PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n', 'DOORMAN_ERR_PROXY_V1');
  refused('PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n', 'DOORMAN_ERR_PROXY_V1');
  refused('PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n', 'DOORMAN_ERR_PROXY_V1');
  refused(`PROXY TCP4 ${'1'.repeat(120)}`, 'DOORMAN_ERR_PROXY_V1');
  refused('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n', 'DOORMAN_ERR_PROXY_V1');
  const v2 = encodeProxyV2('192.0.2.1', 1, '192.0.2.2', 2);
  const badVersion = Buffer.from(v2);
  badVersion[12] = 0x31;
  refused(badVersion, 'DOORMAN_ERR_PROXY_V2');
  const short = Buffer.from(v2);
  short.writeUInt16BE(4, 14);
  refused(short.subarray(0, 20), 'DOORMAN_ERR_PROXY_V2');
  const huge = Buffer.from(v2);
  huge.writeUInt16BE(PROXY_HEADER_MAX, 14);
  refused(huge, 'DOORMAN_ERR_PROXY_V2');
});

test('property: arbitrary bytes are parsed, awaited or refused with a ProtocolError', () => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 60 }).map((b) => Buffer.concat([Buffer.from('PROXY '), b]))), (bytes) => {
      try {
        new ProxyHeaderParser().write(Buffer.from(bytes));
      } catch (e) {
        assert.ok(e instanceof ProtocolError, String(e));
      }
    }),
  );
});
