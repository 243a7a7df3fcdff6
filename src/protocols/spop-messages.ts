/**
 * SPOP payloads over the primitives of ./spop.ts: the KV lists of HELLO and
 * DISCONNECT, NOTIFY's messages and ACK's actions. Both directions are here,
 * each driven by one table, so the agent's decoder and the HAProxy-side
 * encoder (tests, fuzzing, benchmarks) cannot drift apart.
 *
 * HELLO and DISCONNECT items: an item the table names must carry the type the
 * spec gives it and appear once; an item it does not name is read (so it
 * must be well formed) and ignored, since a later HAProxy may add items.
 */
import {
  SPOP_DISCONNECT_MESSAGE_MAX,
  SPOP_FRAME,
  SPOP_MAX_ARGS,
  SPOP_MAX_KV_ITEMS,
  SPOP_MAX_MESSAGES,
  SPOP_MIN_FRAME_SIZE,
  SPOP_STATUS,
  SPOP_VERSION,
  SpopCursor,
  SpopError,
  encodeFrame,
  type SpopFrame,
  type SpopStatus,
  type SpopValue,
  SpopWriter,
} from './spop.js';
import { ProtocolError, type CodeOf } from '../errors.js';

type ItemType = 'string' | 'uint32' | 'bool';
interface ItemSpec {
  readonly key: string;
  readonly type: ItemType;
  /** Set for a mandatory item: the status and error code when it is missing. */
  readonly missing?: readonly [SpopStatus, CodeOf<'protocol'>];
}
type ItemTable = Readonly<Record<string, ItemSpec>>;
type JsOf<T extends ItemType> = T extends 'string' ? string : T extends 'uint32' ? number : boolean;
/** The fields an item table decodes to: mandatory items always there, optional ones maybe undefined. */
export type ItemsOf<T extends ItemTable> = { -readonly [K in keyof T]: T[K] extends { missing: readonly unknown[] } ? JsOf<T[K]['type']> : JsOf<T[K]['type']> | undefined };

const MISSING_VERSION = [SPOP_STATUS.NO_VERSION, 'DOORMAN_ERR_SPOP_NO_VERSION'] as const;
const MISSING_FRAME_SIZE = [SPOP_STATUS.NO_FRAME_SIZE, 'DOORMAN_ERR_SPOP_NO_FRAME_SIZE'] as const;
const MISSING_CAPABILITIES = [SPOP_STATUS.NO_CAPABILITIES, 'DOORMAN_ERR_SPOP_NO_CAPABILITIES'] as const;
const MISSING_ITEM = [SPOP_STATUS.INVALID, 'DOORMAN_ERR_SPOP_MISSING_ITEM'] as const;

/** HAPROXY-HELLO (SPOE.txt 3.2.4). */
export const HAPROXY_HELLO_ITEMS = {
  supportedVersions: { key: 'supported-versions', type: 'string', missing: MISSING_VERSION },
  maxFrameSize: { key: 'max-frame-size', type: 'uint32', missing: MISSING_FRAME_SIZE },
  capabilities: { key: 'capabilities', type: 'string', missing: MISSING_CAPABILITIES },
  healthcheck: { key: 'healthcheck', type: 'bool' },
  engineId: { key: 'engine-id', type: 'string' },
} as const satisfies ItemTable;

/** AGENT-HELLO (SPOE.txt 3.2.5). */
export const AGENT_HELLO_ITEMS = {
  version: { key: 'version', type: 'string', missing: MISSING_VERSION },
  maxFrameSize: { key: 'max-frame-size', type: 'uint32', missing: MISSING_FRAME_SIZE },
  capabilities: { key: 'capabilities', type: 'string', missing: MISSING_CAPABILITIES },
} as const satisfies ItemTable;

/** HAPROXY-DISCONNECT and AGENT-DISCONNECT (SPOE.txt 3.2.8, 3.2.9). */
export const DISCONNECT_ITEMS = {
  status: { key: 'status-code', type: 'uint32', missing: MISSING_ITEM },
  message: { key: 'message', type: 'string', missing: MISSING_ITEM },
} as const satisfies ItemTable;

/** Reads a KV list to its end by `table`; see the module comment for what is refused. */
export function decodeItems<T extends ItemTable>(table: T, payload: Buffer): ItemsOf<T> {
  const fields = Object.keys(table);
  const out: Record<string, unknown> = {};
  const c = new SpopCursor(payload, 0, payload.length);
  for (let n = 0; !c.done; n++) {
    if (n === SPOP_MAX_KV_ITEMS) throw new SpopError(SPOP_STATUS.RESOURCE, 'DOORMAN_ERR_SPOP_CAP', `more than ${SPOP_MAX_KV_ITEMS} items`);
    const key = c.name('item name');
    if (key === '') throw new SpopError(SPOP_STATUS.INVALID, 'DOORMAN_ERR_SPOP_PAYLOAD', 'item with an empty name');
    const value = c.value(`item ${key}`);
    const field = fields.find((f) => (table[f] as ItemSpec).key === key);
    if (field === undefined) continue;
    const spec = table[field] as ItemSpec;
    if (field in out) throw new SpopError(SPOP_STATUS.INVALID, 'DOORMAN_ERR_SPOP_PAYLOAD', `item ${key} sent twice`);
    if (value.type !== spec.type) throw new SpopError(SPOP_STATUS.INVALID, 'DOORMAN_ERR_SPOP_PAYLOAD', `item ${key} is ${value.type.toUpperCase()}, not ${spec.type.toUpperCase()}`);
    out[field] = value.value;
  }
  for (const f of fields) {
    const spec = table[f] as ItemSpec;
    if (spec.missing !== undefined && !(f in out)) throw new SpopError(spec.missing[0], spec.missing[1], `no ${spec.key} item`);
  }
  return out as ItemsOf<T>;
}

/** Writes the items `values` holds, in the table's order. */
export function encodeItems<T extends ItemTable>(table: T, values: ItemsOf<T>, w: SpopWriter): void {
  for (const [field, spec] of Object.entries(table)) {
    const v = (values as Record<string, unknown>)[field];
    if (v === undefined) {
      if (spec.missing !== undefined) throw new ProtocolError('DOORMAN_ERR_SPOP_ENCODE', `mandatory item ${spec.key} missing`);
      continue;
    }
    w.name(spec.key, 'item name');
    w.value({ type: spec.type, value: v } as SpopValue);
  }
}

/** A comma-separated SPOP list; spaces around entries are ignored, as are empty entries. */
function commaList(s: string): string[] {
  return s
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x.length > 0);
}

/** What HAProxy says in its HELLO. */
export interface SpopHaproxyHello {
  /** "Major.Minor" entries; each major also means every minor below it. */
  readonly supportedVersions: readonly string[];
  readonly maxFrameSize: number;
  readonly capabilities: readonly string[];
  /** A health check: answer AGENT-HELLO, then close. */
  readonly healthcheck: boolean;
  readonly engineId: string | null;
}

const VERSION_RE = /^[0-9]{1,3}\.[0-9]{1,3}$/;

/** Decodes a HAPROXY-HELLO payload: versions well formed, max-frame-size at least the spec's minimum. */
export function decodeHaproxyHello(payload: Buffer): SpopHaproxyHello {
  const items = decodeItems(HAPROXY_HELLO_ITEMS, payload);
  const supportedVersions = commaList(items.supportedVersions);
  const bad = supportedVersions.find((v) => !VERSION_RE.test(v));
  if (bad !== undefined || supportedVersions.length === 0) {
    throw new SpopError(SPOP_STATUS.BAD_VERSION, 'DOORMAN_ERR_SPOP_BAD_VERSION', `supported-versions ${JSON.stringify(items.supportedVersions.slice(0, 64))} is not a list of Major.Minor`);
  }
  if (items.maxFrameSize < SPOP_MIN_FRAME_SIZE) {
    throw new SpopError(SPOP_STATUS.BAD_FRAME_SIZE, 'DOORMAN_ERR_SPOP_BAD_FRAME_SIZE', `max-frame-size ${items.maxFrameSize} is under ${SPOP_MIN_FRAME_SIZE}`);
  }
  return { supportedVersions, maxFrameSize: items.maxFrameSize, capabilities: commaList(items.capabilities), healthcheck: items.healthcheck ?? false, engineId: items.engineId ?? null };
}

/** True when `supported` (HAProxy's list) covers our SPOP_VERSION: a listed major of ours, any minor. */
export function supportsOurVersion(supported: readonly string[]): boolean {
  const major = Number(SPOP_VERSION.split('.')[0]);
  return supported.some((v) => Number(v.split('.')[0]) === major);
}

export function encodeHaproxyHello(h: SpopHaproxyHello): Buffer {
  return encodeFrame(SPOP_FRAME.HAPROXY_HELLO, 0, 0, h.maxFrameSize, (w) =>
    encodeItems(HAPROXY_HELLO_ITEMS, { supportedVersions: h.supportedVersions.join(','), maxFrameSize: h.maxFrameSize, capabilities: h.capabilities.join(','), healthcheck: h.healthcheck ? true : undefined, engineId: h.engineId ?? undefined }, w),
  );
}

/** What the agent answers to HELLO. */
export interface SpopAgentHello {
  readonly version: string;
  readonly maxFrameSize: number;
  readonly capabilities: readonly string[];
}

/** The AGENT-HELLO frame. It may be as long as HAProxy's own max-frame-size allows (`limit`). */
export function encodeAgentHello(h: SpopAgentHello, limit: number): Buffer {
  return encodeFrame(SPOP_FRAME.AGENT_HELLO, 0, 0, limit, (w) => encodeItems(AGENT_HELLO_ITEMS, { version: h.version, maxFrameSize: h.maxFrameSize, capabilities: h.capabilities.join(',') }, w));
}

/** Decodes AGENT-HELLO as HAProxy would (tests): the version ours, max-frame-size within [256, what HAProxy offered]. */
export function decodeAgentHello(payload: Buffer, offered: number): SpopAgentHello {
  const items = decodeItems(AGENT_HELLO_ITEMS, payload);
  if (!VERSION_RE.test(items.version.trim()) || !supportsOurVersion([items.version.trim()])) {
    throw new SpopError(SPOP_STATUS.BAD_VERSION, 'DOORMAN_ERR_SPOP_BAD_VERSION', `version ${JSON.stringify(items.version.slice(0, 64))}`);
  }
  if (items.maxFrameSize < SPOP_MIN_FRAME_SIZE || items.maxFrameSize > offered) {
    throw new SpopError(SPOP_STATUS.BAD_FRAME_SIZE, 'DOORMAN_ERR_SPOP_BAD_FRAME_SIZE', `max-frame-size ${items.maxFrameSize} outside [${SPOP_MIN_FRAME_SIZE}, ${offered}]`);
  }
  return { version: items.version.trim(), maxFrameSize: items.maxFrameSize, capabilities: commaList(items.capabilities) };
}

/** A DISCONNECT from either side. */
export interface SpopDisconnect {
  readonly status: number;
  readonly message: string;
}

export function decodeDisconnect(payload: Buffer): SpopDisconnect {
  const items = decodeItems(DISCONNECT_ITEMS, payload);
  if (Buffer.byteLength(items.message) > SPOP_DISCONNECT_MESSAGE_MAX) {
    throw new SpopError(SPOP_STATUS.INVALID, 'DOORMAN_ERR_SPOP_PAYLOAD', `disconnect message over ${SPOP_DISCONNECT_MESSAGE_MAX} bytes`);
  }
  return { status: items.status, message: items.message };
}

/** The first `max` bytes of `s` or less, cut at a character boundary. */
function clip(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  const b = Buffer.from(s).subarray(0, max + 1);
  let end = max;
  while (end > 0 && ((b[end] as number) & 0xc0) === 0x80) end--;
  return b.toString('utf8', 0, end);
}

/** A DISCONNECT frame less its message's bytes, at most: header 7, status-code item 12 + 1 + 5, message item 8 + 1 + 2. */
const DISCONNECT_OVERHEAD = 36;

/**
 * A DISCONNECT frame of `type`. The message is cut to fit `limit` and 255
 * bytes (HAProxy 2.6 refuses a longer one outright), so the frame always
 * goes out, even before HELLO, when all we know is that the peer takes 256.
 */
export function encodeDisconnect(type: typeof SPOP_FRAME.AGENT_DISCONNECT | typeof SPOP_FRAME.HAPROXY_DISCONNECT, d: SpopDisconnect, limit: number): Buffer {
  const room = Math.max(0, Math.min(SPOP_DISCONNECT_MESSAGE_MAX, limit - DISCONNECT_OVERHEAD));
  return encodeFrame(type, 0, 0, limit, (w) => encodeItems(DISCONNECT_ITEMS, { status: d.status, message: clip(d.message, room) }, w));
}

/** One argument of a message: its name (empty when the config gave none) and value. */
export interface SpopArg {
  readonly name: string;
  readonly value: SpopValue;
}

export interface SpopMessage {
  readonly name: string;
  readonly args: readonly SpopArg[];
}

/** A NOTIFY: answer it with an ACK of the same stream-id and frame-id. */
export interface SpopNotify {
  readonly streamId: number;
  readonly frameId: number;
  readonly messages: readonly SpopMessage[];
}

/** The value of the first argument called `name`, if any. */
export function spopArg(m: SpopMessage, name: string): SpopValue | undefined {
  for (const a of m.args) if (a.name === name) return a.value;
  return undefined;
}

/** Decodes a NOTIFY frame's messages, within SPOP_MAX_MESSAGES and SPOP_MAX_ARGS. A message's name must not be empty. */
export function decodeNotify(f: SpopFrame): SpopNotify {
  if (f.frameId === 0) throw new SpopError(SPOP_STATUS.INVALID, 'DOORMAN_ERR_SPOP_FRAME', 'NOTIFY with frame-id 0');
  const c = new SpopCursor(f.payload, 0, f.payload.length);
  const messages: SpopMessage[] = [];
  while (!c.done) {
    if (messages.length === SPOP_MAX_MESSAGES) throw new SpopError(SPOP_STATUS.RESOURCE, 'DOORMAN_ERR_SPOP_CAP', `more than ${SPOP_MAX_MESSAGES} messages in one NOTIFY`);
    const name = c.name('message name');
    if (name === '') throw new SpopError(SPOP_STATUS.INVALID, 'DOORMAN_ERR_SPOP_PAYLOAD', 'message with an empty name');
    const n = c.u8('argument count of message ', name);
    if (n > SPOP_MAX_ARGS) throw new SpopError(SPOP_STATUS.RESOURCE, 'DOORMAN_ERR_SPOP_CAP', `message ${name} has ${n} arguments, over ${SPOP_MAX_ARGS}`);
    const args: SpopArg[] = [];
    let argName: string | null = null;
    try {
      for (let i = 0; i < n; i++) {
        argName = null;
        argName = c.name('argument name');
        args.push({ name: argName, value: c.value('argument') });
      }
    } catch (err) {
      // The field's place, put into words only now: reading carries no text it does not need.
      if (err instanceof SpopError) throw new SpopError(err.status, err.code as CodeOf<'protocol'>, `${err.message} (argument ${argName || `#${args.length}`} of message ${name})`);
      throw err;
    }
    messages.push({ name, args });
  }
  return { streamId: f.streamId, frameId: f.frameId, messages };
}

export function encodeNotify(n: SpopNotify, limit: number): Buffer {
  if (n.messages.length > SPOP_MAX_MESSAGES) throw new ProtocolError('DOORMAN_ERR_SPOP_ENCODE', `more than ${SPOP_MAX_MESSAGES} messages`);
  return encodeFrame(SPOP_FRAME.NOTIFY, n.streamId, n.frameId, limit, (w) => {
    for (const m of n.messages) {
      if (m.name === '' || m.args.length > SPOP_MAX_ARGS) throw new ProtocolError('DOORMAN_ERR_SPOP_ENCODE', `message ${JSON.stringify(m.name)} has no name or over ${SPOP_MAX_ARGS} arguments`);
      w.name(m.name, 'message name');
      w.u8(m.args.length);
      for (const a of m.args) {
        w.name(a.name, 'argument name');
        w.value(a.value);
      }
    }
  });
}

/** Variable scopes, in wire order: the index is the byte. */
export const SPOP_SCOPES = ['proc', 'sess', 'txn', 'req', 'res'] as const;
export type SpopScope = (typeof SPOP_SCOPES)[number];

export type SpopAction =
  | { readonly action: 'set-var'; readonly scope: SpopScope; readonly name: string; readonly value: SpopValue }
  | { readonly action: 'unset-var'; readonly scope: SpopScope; readonly name: string };

/** Action types: wire id and the argument count that must follow it. */
const ACTIONS = {
  'set-var': { id: 1, args: 3 },
  'unset-var': { id: 2, args: 2 },
} as const;
const ACTION_BY_ID = new Map<number, { readonly name: SpopAction['action']; readonly args: number }>(Object.entries(ACTIONS).map(([name, a]) => [a.id, { name: name as SpopAction['action'], args: a.args }]));

/**
 * Variable names as SPOE.txt allows them. HAProxy then prefixes
 * "<scope>.<var-prefix>." and keeps at most 63 bytes of the whole: 2.6 up to
 * 3.4 cut the name there (so a long one sets a different variable, or none);
 * 3.5-dev ignores the action. Keep prefix and names short.
 */
const VAR_NAME_RE = /^[A-Za-z0-9._]+$/;

/**
 * An ACK's actions, encoded: the payload does not depend on the stream it
 * answers, so one made once can answer many NOTIFY frames (encodeAck takes
 * it in place of the actions). A variable name outside [A-Za-z0-9._] is
 * refused, since HAProxy could not use it.
 */
export function encodeAckPayload(actions: readonly SpopAction[]): Buffer {
  const w = new SpopWriter();
  for (const a of actions) {
    const spec = ACTIONS[a.action];
    const scope = SPOP_SCOPES.indexOf(a.scope);
    if (spec === undefined || scope < 0 || typeof a.name !== 'string' || !VAR_NAME_RE.test(a.name)) {
      throw new ProtocolError('DOORMAN_ERR_SPOP_ENCODE', `cannot encode action ${JSON.stringify(a.action)} on ${JSON.stringify(a.scope)}.${JSON.stringify(String(a.name).slice(0, 64))}`);
    }
    w.u8(spec.id);
    w.u8(spec.args);
    w.u8(scope);
    w.name(a.name, 'variable name');
    if (a.action === 'set-var') w.value(a.value);
  }
  return w.finish();
}

/** The ACK frame for one NOTIFY: its actions, or their payload from encodeAckPayload. */
export function encodeAck(streamId: number, frameId: number, actions: readonly SpopAction[] | Buffer, limit: number): Buffer {
  const payload = Buffer.isBuffer(actions) ? actions : encodeAckPayload(actions as readonly SpopAction[]);
  // Sized exactly (length, type, flags, the two ids, the payload): one buffer, written once.
  const size = 9 + SpopWriter.varintLength(streamId) + SpopWriter.varintLength(frameId) + payload.length;
  return encodeFrame(SPOP_FRAME.ACK, streamId, frameId, limit, (w) => w.bytes(payload), size);
}

/** Decodes an ACK's actions as HAProxy reads them (tests, fuzzing), strictly: known types, exact argument counts. */
export function decodeAck(f: SpopFrame): { readonly streamId: number; readonly frameId: number; readonly actions: SpopAction[] } {
  const c = new SpopCursor(f.payload, 0, f.payload.length);
  const actions: SpopAction[] = [];
  while (!c.done) {
    const id = c.u8('action type');
    const spec = ACTION_BY_ID.get(id);
    if (spec === undefined) throw new SpopError(SPOP_STATUS.INVALID, 'DOORMAN_ERR_SPOP_PAYLOAD', `unknown action type ${id}`);
    const args = c.u8('action argument count');
    if (args !== spec.args) throw new SpopError(SPOP_STATUS.INVALID, 'DOORMAN_ERR_SPOP_PAYLOAD', `${spec.name} with ${args} arguments`);
    const scope = SPOP_SCOPES[c.u8('variable scope')];
    if (scope === undefined) throw new SpopError(SPOP_STATUS.INVALID, 'DOORMAN_ERR_SPOP_PAYLOAD', 'unknown variable scope');
    const name = c.name('variable name');
    if (!VAR_NAME_RE.test(name)) throw new SpopError(SPOP_STATUS.INVALID, 'DOORMAN_ERR_SPOP_PAYLOAD', `variable name ${JSON.stringify(name.slice(0, 64))}`);
    actions.push(spec.name === 'set-var' ? { action: 'set-var', scope, name, value: c.value(`value of ${name}`) } : { action: 'unset-var', scope, name });
  }
  return { streamId: f.streamId, frameId: f.frameId, actions };
}
