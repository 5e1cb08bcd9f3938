import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeFrame, FrameReader, FrameError, isTransientDirect, MAX_FRAME_BYTES } from '../src/index.js';
import { directCommand } from './fakes.js';

test('encodeFrame prefixes the length as protobuf varint', () => {
  for (const [n, prefix] of [
    [0, [0]],
    [1, [1]],
    [127, [0x7f]],
    [128, [0x80, 0x01]],
    [300, [0xac, 0x02]],
    [16384, [0x80, 0x80, 0x01]],
    [65536, [0x80, 0x80, 0x04]],
  ]) {
    const f = encodeFrame(new Uint8Array(n).fill(9));
    assert.deepEqual([...f.subarray(0, prefix.length)], prefix, `len ${n}`);
    assert.equal(f.length, prefix.length + n);
  }
});

test('FrameReader reads frames split at every byte and glued together', () => {
  const payloads = [0, 1, 5, 127, 128, 1000, 20000].map(n => Uint8Array.from({ length: n }, (_, i) => (i * 31 + n) & 0xff));
  const stream = Buffer.concat(payloads.map(p => encodeFrame(p)));
  for (const step of [1, 2, 3, 7, 64, 1000, stream.length]) {
    const r = new FrameReader();
    const got = [];
    for (let i = 0; i < stream.length; i += step) got.push(...r.push(stream.subarray(i, i + step)));
    assert.equal(got.length, payloads.length, `step ${step}`);
    got.forEach((f, i) => {
      assert.ok(f instanceof ArrayBuffer);
      assert.deepEqual(new Uint8Array(f), payloads[i]);
    });
    assert.equal(r.pending, 0);
  }
});

test('FrameReader refuses a prefix over the limit before the frame arrives', () => {
  const r = new FrameReader();
  const prefix = encodeFrame(new Uint8Array(MAX_FRAME_BYTES + 1)).subarray(0, 3);
  assert.throws(() => r.push(prefix), FrameError);
  const r2 = new FrameReader(10);
  assert.throws(() => r2.push(new Uint8Array([11])), /over the limit/);
  assert.deepEqual(new FrameReader(10).push(new Uint8Array([10])), []);
});

test('FrameReader refuses a prefix that is not a varint', () => {
  assert.throws(() => new FrameReader().push(new Uint8Array(11).fill(0xff)), /not a varint/);
  // A huge but well-formed varint is over the limit, not a crash.
  assert.throws(() => new FrameReader().push(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])), FrameError);
  // An incomplete prefix waits.
  const r = new FrameReader();
  assert.deepEqual(r.push(new Uint8Array([0x80, 0x80])), []);
  assert.equal(r.pending, 2);
});

test('FrameReader on random input returns frames or throws FrameError, nothing else', () => {
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  for (let i = 0; i < 3000; i++) {
    const r = new FrameReader(4096);
    const n = Math.floor(rnd() * 64);
    const b = Uint8Array.from({ length: n }, () => Math.floor(rnd() * 256));
    try {
      for (const f of r.push(b)) assert.ok(f.byteLength <= 4096);
    } catch (e) {
      assert.ok(e instanceof FrameError, String(e));
    }
  }
});

test('isTransientDirect finds direct.transient and nothing else', () => {
  assert.equal(isTransientDirect(directCommand({ transient: true })), true);
  assert.equal(isTransientDirect(directCommand({ transient: false })), false);
  // cmd=conv (1) with the same payload
  const conv = directCommand({ transient: true });
  conv[1] = 1;
  assert.equal(isTransientDirect(conv), false);
  assert.equal(isTransientDirect(new Uint8Array(0)), false);
  // truncated and garbage frames are not transient, and do not throw
  const t = directCommand({ transient: true, text: 'typing' });
  for (let i = 0; i < t.length; i++) assert.equal(isTransientDirect(t.subarray(0, i)), false, `cut at ${i}`);
  let seed = 7;
  for (let i = 0; i < 3000; i++) {
    const b = Uint8Array.from({ length: 1 + (i % 40) }, () => (seed = (seed * 48271) % 2147483647) & 0xff);
    assert.equal(typeof isTransientDirect(b), 'boolean');
  }
});
