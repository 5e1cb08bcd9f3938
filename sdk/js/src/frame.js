// Framing of LeanCloud GenericCommand frames on a WebTransport stream:
// each frame is prefixed by its length as an unsigned varint (protobuf's
// delimited format, the edge's protodelim). docs/WEBTRANSPORT.md.

/** The edge refuses frames over 64 KiB (Limits.MaxFrameBytes). */
export const MAX_FRAME_BYTES = 64 * 1024;

/** toBytes returns data (ArrayBuffer, a typed array or a string) as a Uint8Array. */
export function toBytes(data) {
  // A plain view: a subclass's slice (Node's Buffer) may not copy.
  if (data instanceof Uint8Array) return data.constructor === Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (typeof data === 'string') return new TextEncoder().encode(data);
  throw new TypeError('relaymesh: cannot send ' + Object.prototype.toString.call(data));
}

/** encodeFrame prefixes payload with its length as an unsigned varint. */
export function encodeFrame(payload) {
  const p = toBytes(payload);
  let n = p.length;
  const head = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    head.push(b);
  } while (n > 0);
  const out = new Uint8Array(head.length + p.length);
  out.set(head, 0);
  out.set(p, head.length);
  return out;
}

/** FrameError is a stream that can't be read as frames. */
export class FrameError extends Error {
  constructor(message) {
    super(message);
    this.name = 'FrameError';
  }
}

/**
 * FrameReader cuts a byte stream, arriving in chunks of any size, into
 * frames. push returns the frames completed by a chunk, each a fresh
 * ArrayBuffer; it throws FrameError on a length prefix longer than 10
 * bytes or over maxFrame (the reader is then unusable).
 */
export class FrameReader {
  constructor(maxFrame = MAX_FRAME_BYTES) {
    this.maxFrame = maxFrame;
    this.buf = new Uint8Array(0);
  }

  push(chunk) {
    const c = toBytes(chunk);
    if (this.buf.length === 0) {
      this.buf = c;
    } else {
      const b = new Uint8Array(this.buf.length + c.length);
      b.set(this.buf, 0);
      b.set(c, this.buf.length);
      this.buf = b;
    }
    const frames = [];
    let off = 0;
    for (;;) {
      // Read the varint.
      let len = 0;
      let mul = 1;
      let i = off;
      let done = false;
      while (i < this.buf.length) {
        const b = this.buf[i++];
        len += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) {
          done = true;
          break;
        }
        if (i - off >= 10) throw new FrameError('length prefix is not a varint');
      }
      if (!done) break;
      if (len > this.maxFrame) throw new FrameError(`frame of ${len} bytes over the limit of ${this.maxFrame}`);
      if (this.buf.length - i < len) break;
      frames.push(this.buf.slice(i, i + len).buffer);
      off = i + len;
    }
    this.buf = off === this.buf.length ? new Uint8Array(0) : this.buf.slice(off);
    return frames;
  }

  /** pending is the number of bytes of an incomplete frame held. */
  get pending() {
    return this.buf.length;
  }
}

// readVarint reads an unsigned varint at b[off]; it returns [value, next]
// or null when b ends inside it or it is longer than 10 bytes.
function readVarint(b, off) {
  let v = 0;
  let mul = 1;
  for (let i = off; i < b.length && i - off < 10; i++) {
    v += (b[i] & 0x7f) * mul;
    mul *= 128;
    if ((b[i] & 0x80) === 0) return [v, i + 1];
  }
  return null;
}

// fields calls fn(field, wireType, value, start, end) for each top-level
// field of the protobuf message b; value is the varint for wire type 0.
// It returns false on a malformed message.
function fields(b, fn) {
  let off = 0;
  while (off < b.length) {
    const t = readVarint(b, off);
    if (!t) return false;
    const field = Math.floor(t[0] / 8);
    const wire = t[0] % 8;
    off = t[1];
    switch (wire) {
      case 0: {
        const v = readVarint(b, off);
        if (!v) return false;
        fn(field, wire, v[0], off, v[1]);
        off = v[1];
        break;
      }
      case 1:
        off += 8;
        break;
      case 2: {
        const l = readVarint(b, off);
        if (!l || l[1] + l[0] > b.length) return false;
        fn(field, wire, undefined, l[1], l[1] + l[0]);
        off = l[1] + l[0];
        break;
      }
      case 5:
        off += 4;
        break;
      default:
        return false;
    }
    if (off > b.length) return false;
  }
  return true;
}

const CMD_DIRECT = 2; // CommandType.direct
const FIELD_CMD = 1; // GenericCommand.cmd
const FIELD_DIRECT = 104; // GenericCommand.directMessage
const FIELD_TRANSIENT = 13; // DirectCommand.transient

/**
 * isTransientDirect reports whether the GenericCommand frame is a direct
 * with transient=true (a typing indicator): those may travel as datagrams.
 */
export function isTransientDirect(frame) {
  const b = toBytes(frame);
  let cmd = 0; // proto2 default: session
  let direct = null;
  const ok = fields(b, (f, w, v, s, e) => {
    if (f === FIELD_CMD && w === 0) cmd = v;
    if (f === FIELD_DIRECT && w === 2) direct = [s, e];
  });
  if (!ok || cmd !== CMD_DIRECT || !direct) return false;
  let transient = false;
  const ok2 = fields(b.subarray(direct[0], direct[1]), (f, w, v) => {
    if (f === FIELD_TRANSIENT && w === 0) transient = v !== 0;
  });
  return ok2 && transient;
}
