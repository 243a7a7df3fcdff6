/**
 * Postfix's "plain" attribute encoding, as anvil(8) and the SMTP access policy
 * delegation protocol speak it. No I/O here: bytes in, attribute blocks out.
 *
 *   block      = *( name "=" value LF ) LF
 *   name       = 1*( any byte except NUL, "=", LF )
 *   value      = *( any byte except NUL, LF )
 *
 * An empty line ends a block. Postfix's reader (src/util/attr_scan_plain.c)
 * accepts any string up to 4 * line_length_limit; we are stricter and name every
 * cap, because the peer on the other end of a socket is never trusted.
 *
 * A block is handed out as a flat array [name0, value0, name1, value1, ...]:
 * one allocation per block instead of one per attribute, because the anvil
 * service decodes every request of every SMTP session on its hot path.
 */
import { ProtocolError } from '../errors.js';

/** Caps on what one peer may send. Every limit is a ProtocolError when broken. */
export interface AttrLimits {
  /** Bytes in one `name=value` line, newline excluded. */
  readonly maxLine: number;
  /** Attributes in one block. */
  readonly maxAttrs: number;
  /** Bytes in one block, newlines included. */
  readonly maxBlock: number;
}

const LF = 0x0a;
const EQ = 0x3d;
const NUL = 0x00;

/**
 * Incremental decoder. Call `write(chunk)` with whatever the socket delivered;
 * it calls `onBlock` once per complete block, in order, and throws ProtocolError
 * on the first byte that breaks the grammar or a cap. After a throw the reader
 * is unusable: the caller closes the connection.
 */
export class AttrReader {
  private readonly limits: AttrLimits;
  private readonly onBlock: (attrs: string[]) => void;
  /** Bytes of an unfinished line carried over from the previous chunk. */
  private carry: Buffer | null = null;
  private attrs: string[] = [];
  private blockBytes = 0;
  private failed = false;

  constructor(limits: AttrLimits, onBlock: (attrs: string[]) => void) {
    this.limits = limits;
    this.onBlock = onBlock;
  }

  /** True while part of a block has arrived but not its end: a peer that stalls here is stalling. */
  get pending(): boolean {
    return this.carry !== null || this.attrs.length > 0;
  }

  write(chunk: Buffer): void {
    if (this.failed) throw new ProtocolError('DOORMAN_ERR_ATTR_STATE', 'reader already failed');
    let data = chunk;
    if (this.carry !== null) {
      data = Buffer.concat([this.carry, chunk]);
      this.carry = null;
    }
    try {
      this.scan(data);
    } catch (err) {
      this.failed = true;
      throw err;
    }
  }

  private scan(data: Buffer): void {
    const { maxLine, maxAttrs, maxBlock } = this.limits;
    let pos = 0;
    const end = data.length;
    // One scan per chunk: a NUL anywhere ahead will be inside some line we reach.
    const nul = data.indexOf(NUL);
    while (pos < end) {
      const nl = data.indexOf(LF, pos);
      if (nl === -1) {
        const rest = end - pos;
        if (rest > maxLine) throw tooLong('line', maxLine);
        if (this.blockBytes + rest > maxBlock) throw tooLong('block', maxBlock);
        this.carry = data.subarray(pos);
        return;
      }
      const lineLen = nl - pos;
      this.blockBytes += lineLen + 1;
      if (lineLen > maxLine) throw tooLong('line', maxLine);
      if (this.blockBytes > maxBlock) throw tooLong('block', maxBlock);
      if (lineLen === 0) {
        const block = this.attrs;
        this.attrs = [];
        this.blockBytes = 0;
        pos = nl + 1;
        this.onBlock(block);
        continue;
      }
      const eq = data.indexOf(EQ, pos);
      if (eq === -1 || eq > nl) {
        throw new ProtocolError('DOORMAN_ERR_ATTR_NO_VALUE', `attribute line without "=": ${preview(data, pos, nl)}`);
      }
      if (eq === pos) throw new ProtocolError('DOORMAN_ERR_ATTR_NO_NAME', 'attribute line with an empty name');
      if (nul !== -1 && nul < nl) throw new ProtocolError('DOORMAN_ERR_ATTR_NUL', 'NUL byte in attribute');
      if (this.attrs.length >= maxAttrs * 2) {
        throw new ProtocolError('DOORMAN_ERR_ATTR_TOO_MANY', `more than ${maxAttrs} attributes in one block`);
      }
      this.attrs.push(data.toString('utf8', pos, eq), data.toString('utf8', eq + 1, nl));
      pos = nl + 1;
    }
  }
}

function tooLong(what: 'line' | 'block', cap: number): ProtocolError {
  return new ProtocolError('DOORMAN_ERR_ATTR_TOO_LONG', `attribute ${what} longer than ${cap} bytes`);
}

function preview(data: Buffer, from: number, to: number): string {
  return JSON.stringify(data.toString('utf8', from, Math.min(to, from + 64)));
}

/**
 * Encodes one block from a flat [name, value, ...] list. A name or value that
 * cannot be framed (empty name, "=" in a name, NUL or LF anywhere) is refused:
 * it would corrupt the stream for the peer.
 */
export function encodeAttrs(flat: readonly string[]): string {
  let out = '';
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i] as string;
    const value = flat[i + 1] ?? '';
    if (name.length === 0 || /[=\n\0]/.test(name) || /[\n\0]/.test(value)) {
      throw new ProtocolError('DOORMAN_ERR_ATTR_ENCODE', `cannot encode attribute ${JSON.stringify(name)}`);
    }
    out += `${name}=${value}\n`;
  }
  return out + '\n';
}
