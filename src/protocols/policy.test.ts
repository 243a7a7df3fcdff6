import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProtocolError } from '../errors.js';
import { AttrReader } from './attr-plain.js';
import { POLICY_LIMITS, decodePolicyRequest, encodePolicyAction, encodePolicyRequest } from './policy.js';

/**
 * Captured from Postfix 3.7.11's smtpd (Debian 12) on this kind of machine: the
 * request at CONNECT, then the one after `XCLIENT ADDR=77.88.8.8`.
 */
const CAPTURED = Buffer.from(
  [
    "request=smtpd_access_policy",
    "protocol_state=CONNECT",
    "protocol_name=SMTP",
    "client_address=127.0.0.1",
    "client_name=localhost",
    "client_port=52202",
    "reverse_client_name=localhost",
    "server_address=127.0.0.1",
    "server_port=12525",
    "helo_name=",
    "sender=",
    "recipient=",
    "recipient_count=0",
    "queue_id=",
    "instance=",
    "size=0",
    "etrn_domain=",
    "stress=",
    "sasl_method=",
    "sasl_username=",
    "sasl_sender=",
    "ccert_subject=",
    "ccert_issuer=",
    "ccert_fingerprint=",
    "ccert_pubkey_fingerprint=",
    "encryption_protocol=",
    "encryption_cipher=",
    "encryption_keysize=0",
    "policy_context=",
    "",
    "request=smtpd_access_policy",
    "protocol_state=XCLIENT",
    "protocol_name=SMTP",
    "client_address=77.88.8.8",
    "client_name=unknown",
    "client_port=52202",
    "reverse_client_name=localhost",
    "server_address=127.0.0.1",
    "server_port=12525",
    "helo_name=",
    "sender=",
    "recipient=",
    "recipient_count=0",
    "queue_id=",
    "instance=",
    "size=0",
    "etrn_domain=",
    "stress=",
    "sasl_method=",
    "sasl_username=",
    "sasl_sender=",
    "ccert_subject=",
    "ccert_issuer=",
    "ccert_fingerprint=",
    "ccert_pubkey_fingerprint=",
    "encryption_protocol=",
    "encryption_cipher=",
    "encryption_keysize=0",
    "policy_context=",
    "",
    "",
  ].join('\n'),
);

function decodeSplit(bytes: Buffer, at: number[]) {
  const out: Array<ReadonlyMap<string, string>> = [];
  const r = new AttrReader(POLICY_LIMITS, (a) => out.push(decodePolicyRequest(a)));
  let last = 0;
  for (const p of [...at, bytes.length]) {
    r.write(bytes.subarray(last, p));
    last = p;
  }
  return out;
}

test('captured CONNECT and XCLIENT requests decode the same at every byte split', () => {
  const whole = decodeSplit(CAPTURED, []);
  assert.equal(whole.length, 2);
  const [connect, xclient] = whole;
  assert.equal(connect?.get('protocol_state'), 'CONNECT');
  assert.equal(connect?.get('client_address'), '127.0.0.1');
  assert.equal(connect?.get('policy_context'), '');
  assert.equal(connect?.size, 29);
  assert.equal(xclient?.get('protocol_state'), 'XCLIENT');
  assert.equal(xclient?.get('client_address'), '77.88.8.8');
  for (let i = 1; i < CAPTURED.length; i++) assert.deepEqual(decodeSplit(CAPTURED, [i]), whole, `split at ${i}`);
});

test('values may hold "=" and unknown attributes are kept', () => {
  const [r] = decodeSplit(Buffer.from(encodePolicyRequest({ protocol_state: 'RCPT', sender: 'a=b@example.org', future_attribute: 'x' })), []);
  assert.equal(r?.get('sender'), 'a=b@example.org');
  assert.equal(r?.get('future_attribute'), 'x');
});

test('refused: no request, another request, a duplicate, over the caps', () => {
  const bad = (s: string, code: string) =>
    assert.throws(() => decodeSplit(Buffer.from(s), []), (e: unknown) => e instanceof ProtocolError && e.code === code, s.slice(0, 40));
  bad('protocol_state=RCPT\n\n', 'DOORMAN_ERR_POLICY_REQUEST');
  bad('request=junk\n\n', 'DOORMAN_ERR_POLICY_REQUEST');
  bad('request=smtpd_access_policy\nsender=a\nsender=b\n\n', 'DOORMAN_ERR_POLICY_DUPLICATE');
  bad(`request=smtpd_access_policy\nsender=${'x'.repeat(5000)}\n\n`, 'DOORMAN_ERR_ATTR_TOO_LONG');
  bad(`request=smtpd_access_policy\n${Array.from({ length: 70 }, (_, i) => `a${i}=1`).join('\n')}\n\n`, 'DOORMAN_ERR_ATTR_TOO_MANY');
});

test('an action can never break the framing', () => {
  assert.equal(encodePolicyAction('DUNNO'), 'action=DUNNO\n\n');
  assert.equal(encodePolicyAction('554 5.7.1 bad\r\nclient\0'), 'action=554 5.7.1 bad  client \n\n');
});

test('attributes of newer Postfix releases are taken: 3.8 compatibility_level and mail_version, 3.12 tls_sni', () => {
  // In the order of 3.12's check_policy_service(), shortened.
  const wire = Buffer.from(
    'request=smtpd_access_policy\nprotocol_state=CONNECT\nprotocol_name=SMTP\nclient_address=::1\nclient_name=localhost\n' +
      'encryption_keysize=0\ntls_sni=\npolicy_context=\ncompatibility_level=3.10\nmail_version=3.10.13\n\n',
  );
  const [req] = decodeSplit(wire, []);
  assert.equal(req?.get('client_address'), '::1');
  assert.equal(req?.get('mail_version'), '3.10.13');
  assert.equal(req?.get('compatibility_level'), '3.10');
  assert.equal(req?.get('tls_sni'), '');
});
