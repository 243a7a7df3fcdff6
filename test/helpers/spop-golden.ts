/**
 * SPOP bytes captured from a real HAProxy (Debian 12's 2.6.12-1+deb12u4,
 * nbthread 2) talking to an agent built on src/protocols/spop-agent.ts, on
 * 127.0.0.1. The SPOE config was:
 *
 *   spoe-agent doorman-agent
 *       messages doorman-client
 *       option var-prefix doorman
 *       timeout hello 2s / idle 4s / processing 1s
 *   spoe-message doorman-client
 *       args src=src dport=dst_port frontend=fe_name flag=bool(1)
 *            nothing=var(sess.never_set) blob=bin(00ff10) dst
 *       event on-client-session
 *
 * with `option spop-check` on the agent's server line, and clients to the
 * frontend `mail` from 127.0.0.1, 127.0.0.2 and ::1, twenty at once for the
 * pipelined chunk. HAProxy took every ACK below: its log showed each
 * variable with the value sent (verdict=accept, retry=-42, port=47001,
 * big=-9007199254740993, banned=1, ip=127.0.0.1, country=DE, bin=6F6B21),
 * `st=0` on every SPOE event, and for an AGENT-DISCONNECT with status 13 it
 * logged `st=269` (256 + 13).
 */

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

/** HAPROXY-HELLO: supported-versions "2.0", max-frame-size 16380, capabilities "pipelining,async", engine-id. */
export const HAPROXY_HELLO = hex(`
  000000810100000001000012737570706f727465642d76657273696f6e730803322e300e6d61782d6672616d652d73697a6503fcf0060c6361706162
  696c69746965730810706970656c696e696e672c6173796e6309656e67696e652d6964082433613962613732342d383661352d343965382d62323036
  2d633766633235356630366264`);
export const HAPROXY_HELLO_ENGINE_ID = '3a9ba724-86a5-49e8-b206-c7fc255f06bd';

/** The health check's HELLO: empty capabilities, no engine-id, healthcheck true. */
export const HAPROXY_HELLO_HEALTHCHECK = hex(`
  0000004e0100000001000012737570706f727465642d76657273696f6e730803322e300e6d61782d6672616d652d73697a6503fcf0060c6361706162
  696c697469657308000b6865616c7468636865636b11`);

/** NOTIFY, stream-id 0 (2.6's first stream), frame-id 1, a client from 127.0.0.1 to port 47001. */
export const NOTIFY_V4 = hex(`
  00000058030000000100010e646f6f726d616e2d636c69656e740703737263067f0000010564706f727404f9ea150866726f6e74656e6408046d6169
  6c04666c616711076e6f7468696e670004626c6f62090300ff1000067f000001`);

/** NOTIFY, stream-id 4, frame-id 1, a client from ::1. */
export const NOTIFY_V6 = hex(`
  00000070030000000104010e646f6f726d616e2d636c69656e74070373726307000000000000000000000000000000010564706f727404f9ea150866
  726f6e74656e6408046d61696c04666c616711076e6f7468696e670004626c6f62090300ff10000700000000000000000000000000000001`);

/** One read from the socket holding five pipelined NOTIFY frames, stream-ids 19, 30, 31, 32, 33. */
export const NOTIFY_PIPELINED = hex(`
  00000058030000000113010e646f6f726d616e2d636c69656e740703737263067f0000010564706f727404f9ea150866726f6e74656e6408046d6169
  6c04666c616711076e6f7468696e670004626c6f62090300ff1000067f0000010000005803000000011e010e646f6f726d616e2d636c69656e740703
  737263067f0000010564706f727404f9ea150866726f6e74656e6408046d61696c04666c616711076e6f7468696e670004626c6f62090300ff100006
  7f0000010000005803000000011f010e646f6f726d616e2d636c69656e740703737263067f0000010564706f727404f9ea150866726f6e74656e6408
  046d61696c04666c616711076e6f7468696e670004626c6f62090300ff1000067f00000100000058030000000120010e646f6f726d616e2d636c6965
  6e740703737263067f0000010564706f727404f9ea150866726f6e74656e6408046d61696c04666c616711076e6f7468696e670004626c6f62090300
  ff1000067f00000100000058030000000121010e646f6f726d616e2d636c69656e740703737263067f0000010564706f727404f9ea150866726f6e74
  656e6408046d61696c04666c616711076e6f7468696e670004626c6f62090300ff1000067f000001`);
export const NOTIFY_PIPELINED_STREAMS = [19, 30, 31, 32, 33];

/** HAPROXY-DISCONNECT after `timeout idle`: status-code 2, message "a timeout occurred". */
export const HAPROXY_DISCONNECT_IDLE = hex('00000031020000000100000b7374617475732d636f64650302076d6573736167650812612074696d656f7574206f63637572726564');

/** Our AGENT-HELLO to HAPROXY_HELLO: version "2.0", max-frame-size 16380, capabilities "pipelining". HAProxy took it. */
export const AGENT_HELLO = hex('00000040650000000100000776657273696f6e0803322e300e6d61782d6672616d652d73697a6503fcf0060c6361706162696c6974696573080a706970656c696e696e67');

/** Our AGENT-DISCONNECT in reply to HAPROXY_DISCONNECT_IDLE: status-code 0, message "normal close". */
export const AGENT_DISCONNECT_NORMAL = hex('0000002b660000000100000b7374617475732d636f64650300076d657373616765080c6e6f726d616c20636c6f7365');

/** The actions of ACK_V4, as the agent was asked to send them. */
export const ACK_ACTIONS = [
  { action: 'set-var', scope: 'sess', name: 'verdict', value: { type: 'string', value: 'accept' } },
  { action: 'set-var', scope: 'sess', name: 'retry_after', value: { type: 'int32', value: -42 } },
  { action: 'set-var', scope: 'sess', name: 'port_seen', value: { type: 'uint32', value: 47001 } },
  { action: 'set-var', scope: 'sess', name: 'big', value: { type: 'int64', value: -9007199254740993n } },
  { action: 'set-var', scope: 'sess', name: 'banned', value: { type: 'bool', value: true } },
  { action: 'set-var', scope: 'sess', name: 'ip', value: { type: 'ipv4', value: '127.0.0.1' } },
  { action: 'set-var', scope: 'sess', name: 'country', value: { type: 'string', value: 'DE' } },
  { action: 'set-var', scope: 'sess', name: 'bin', value: { type: 'binary', value: Buffer.from('ok!') } },
  { action: 'unset-var', scope: 'sess', name: 'gone' },
] as const;

/** The ACK to NOTIFY_V4 (stream-id 0, frame-id 1) carrying ACK_ACTIONS. */
export const ACK_V4 = hex(`
  0000009067000000010001010301077665726469637408066163636570740103010b72657472795f616674657202f6eefefefefefefefe0e01030109
  706f72745f7365656e03f9ea150103010362696704fff0fefefefefefefd0e0103010662616e6e656411010301026970067f00000101030107636f75
  6e747279080244450103010362696e09036f6b2102020104676f6e65`);
