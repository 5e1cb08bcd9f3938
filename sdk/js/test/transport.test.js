import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  RelayWebSocket,
  createWebSocketAdapter,
  configure,
  options,
  state,
  onTransport,
  rememberInfo,
  certificateHashes,
  wtURLFromWS,
  infoURLFromWS,
  encodeFrame,
  installGlobal,
  isTransientDirect,
} from '../src/index.js';
import { _resetForTests } from '../src/transport.js';
import { FakeWebTransport, FakeWebSocket, fakeFetch, reset, until, tick, directCommand, HASH } from './fakes.js';

const URL_ = 'ws://edge.test:8080/';

beforeEach(() => {
  reset();
  _resetForTests();
  configure({ mode: 'auto', datagrams: true, connectTimeoutMs: 500, retryWebTransportAfterMs: 60000 });
});

function open(opts = {}, protocol = 'lc.protobuf2.3') {
  const f = opts.fetch || fakeFetch();
  const ws = new RelayWebSocket(URL_, protocol, { WebTransport: FakeWebTransport, WebSocket: FakeWebSocket, fetch: f, ...opts });
  const seen = { open: 0, messages: [], closes: [], errors: 0 };
  ws.onopen = () => seen.open++;
  ws.onmessage = ev => seen.messages.push(ev.data);
  ws.onclose = ev => seen.closes.push(ev);
  ws.onerror = () => seen.errors++;
  return { ws, seen, fetch: f };
}

test('URLs of an edge', () => {
  assert.equal(wtURLFromWS('ws://127.0.0.1:8080/'), 'https://127.0.0.1:8080/wt');
  assert.equal(wtURLFromWS('wss://im.example.com/x?y=1'), 'https://im.example.com/wt');
  assert.equal(infoURLFromWS('ws://127.0.0.1:8080/'), 'http://127.0.0.1:8080/v1/webtransport');
  assert.equal(infoURLFromWS('wss://im.example.com/'), 'https://im.example.com/v1/webtransport');
});

test('certificate hashes decode from base64, and bad ones are refused', () => {
  const h = certificateHashes({ url: 'x', certificateHashes: [{ algorithm: 'sha-256', value: HASH }] });
  assert.equal(h.length, 1);
  assert.deepEqual([...h[0].value], new Array(32).fill(7));
  assert.deepEqual(certificateHashes({ url: 'x' }), []);
  assert.throws(() => certificateHashes({ certificateHashes: [{ algorithm: 'sha-256', value: 'AAAA' }] }), /bad certificate hash/);
  assert.throws(() => certificateHashes({ certificateHashes: [{ algorithm: 'sha-1', value: HASH }] }), /bad certificate hash/);
  assert.throws(() => certificateHashes({ certificateHashes: [{ algorithm: 'sha-256', value: 5 }] }), TypeError);
});

test('configure refuses unknown options and modes', () => {
  assert.throws(() => configure({ nope: 1 }), /unknown option/);
  assert.throws(() => configure({ mode: 'carrier-pigeon' }), /mode must be/);
  assert.equal(options().mode, 'auto');
  assert.throws(() => createWebSocketAdapter({ nope: 1 }), /unknown option/);
});

test('WebTransport: hash from /v1/webtransport, frames delimited on one stream, messages as ArrayBuffers', async () => {
  const seenStates = [];
  const off = onTransport(s => seenStates.push(s));
  const { ws, seen, fetch } = open();
  assert.equal(ws.readyState, RelayWebSocket.CONNECTING);
  assert.throws(() => ws.send(new ArrayBuffer(1)), /still connecting/);
  await until(() => seen.open === 1);
  off();
  assert.deepEqual(fetch.calls, ['http://edge.test:8080/v1/webtransport']);
  const wt = FakeWebTransport.instances[0];
  assert.equal(wt.url, 'https://edge.test:8080/wt');
  assert.deepEqual([...wt.init.serverCertificateHashes[0].value], new Array(32).fill(7));
  assert.equal(ws.readyState, RelayWebSocket.OPEN);
  assert.equal(ws.transport, 'webtransport');
  assert.equal(ws.protocol, 'lc.protobuf2.3');
  assert.equal(state.transport, 'webtransport');
  assert.equal(seenStates.length, 1);
  assert.equal(seenStates[0].transport, 'webtransport');

  ws.send(new Uint8Array([1, 2, 3]).buffer);
  ws.send(directCommand({ transient: false }));
  await tick();
  const d = directCommand({ transient: false });
  assert.deepEqual([...wt.written()], [3, 1, 2, 3, d.length, ...d]);
  assert.equal(wt.clientDatagrams.length, 0);

  // Two frames, the first split across chunks.
  const a = encodeFrame(new Uint8Array([9, 9]));
  const b = encodeFrame(new Uint8Array(300).fill(4));
  wt.serverWrite(a.subarray(0, 1));
  wt.serverWrite(Buffer.concat([a.subarray(1), b]));
  await until(() => seen.messages.length === 2);
  assert.ok(seen.messages[0] instanceof ArrayBuffer);
  assert.deepEqual([...new Uint8Array(seen.messages[0])], [9, 9]);
  assert.equal(seen.messages[1].byteLength, 300);
  ws.close();
  assert.equal(ws.readyState, RelayWebSocket.CLOSING);
  await until(() => seen.closes.length === 1);
  assert.equal(wt.clientFin, true);
  assert.equal(wt.closeCalls[0].closeCode, 1000);
});

test('transient directs go as datagrams both ways; other frames never do', async () => {
  const { ws, seen } = open();
  await until(() => seen.open === 1);
  const wt = FakeWebTransport.instances[0];
  const typing = directCommand({ transient: true });
  ws.send(typing);
  ws.send(directCommand({ transient: false }));
  await tick();
  assert.equal(wt.clientDatagrams.length, 1);
  assert.deepEqual([...wt.clientDatagrams[0]], [...typing]);
  assert.equal(state.datagramsOut, 1);
  // Too big for a datagram (maxDatagramSize 1200): on the stream.
  const before = wt.written().length;
  const big = directCommand({ transient: true, text: 'x'.repeat(1300) });
  assert.equal(isTransientDirect(big), true);
  ws.send(big);
  await tick();
  assert.equal(wt.clientDatagrams.length, 1);
  assert.equal(wt.written().length, before + big.length + 2);
  wt.serverDatagram(typing);
  await until(() => seen.messages.length === 1);
  assert.deepEqual([...new Uint8Array(seen.messages[0])], [...typing]);
  assert.equal(state.datagramsIn, 1);
});

test('datagrams off: transient directs go on the stream', async () => {
  const { ws, seen } = open({ datagrams: false });
  await until(() => seen.open === 1);
  ws.send(directCommand({ transient: true }));
  await tick();
  assert.equal(FakeWebTransport.instances[0].clientDatagrams.length, 0);
  assert.ok(FakeWebTransport.instances[0].written().length > 0);
});

test('the edge closing: data first, then its close code', async () => {
  const { seen } = open();
  await until(() => seen.open === 1);
  const wt = FakeWebTransport.instances[0];
  wt.serverWrite(encodeFrame(new Uint8Array([1])));
  wt.serverFin();
  wt.serverClose(4107, 'idle');
  await until(() => seen.closes.length === 1);
  assert.equal(seen.messages.length, 1);
  assert.equal(seen.closes[0].code, 4107);
  assert.equal(seen.closes[0].reason, 'idle');
  assert.deepEqual(state.lastClose, { transport: 'webtransport', code: 4107, reason: 'idle' });
  assert.equal(seen.closes[0].wasClean, false);
});

test('garbage from the edge closes the session with 1002, once', async () => {
  const { ws, seen } = open();
  await until(() => seen.open === 1);
  const wt = FakeWebTransport.instances[0];
  wt.serverWrite(new Uint8Array(12).fill(0xff));
  await until(() => seen.closes.length === 1);
  assert.equal(seen.closes[0].code, 1002);
  assert.equal(wt.closeCalls[0].closeCode, 1002);
  assert.equal(ws.readyState, RelayWebSocket.CLOSED);
  ws.send(new Uint8Array([1])); // dropped, as on a closed WebSocket
  ws.close();
  await tick(20);
  assert.equal(seen.closes.length, 1);
});

test('a stream ending inside a frame is 1002', async () => {
  const { seen } = open();
  await until(() => seen.open === 1);
  const wt = FakeWebTransport.instances[0];
  wt.serverWrite(new Uint8Array([5, 1, 2]));
  wt.serverFin();
  await until(() => seen.closes.length === 1);
  assert.equal(seen.closes[0].code, 1002);
});

test('fallback to WebSocket when WebTransport fails, and no retry for a while', async () => {
  FakeWebTransport.behavior = 'fail';
  const { ws, seen } = open();
  await until(() => seen.open === 1);
  assert.equal(ws.transport, 'websocket');
  assert.match(ws.fallbackReason, /WebTransport failed/);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(FakeWebSocket.instances[0].url, URL_);
  assert.deepEqual(FakeWebSocket.instances[0].protocols, ['lc.protobuf2.3']);
  assert.equal(ws.protocol, 'lc.protobuf2.3');
  ws.send(new Uint8Array([1, 2]).buffer);
  assert.equal(FakeWebSocket.instances[0].sent.length, 1);
  // The next connection goes straight to WebSocket.
  const n = FakeWebTransport.instances.length;
  const second = open();
  await until(() => second.seen.open === 1);
  assert.equal(FakeWebTransport.instances.length, n);
  assert.equal(second.ws.fallbackReason, 'WebTransport failed recently');
  // The WebSocket's close reaches the SDK.
  FakeWebSocket.instances[0].close(1006, 'gone');
  await until(() => seen.closes.length === 1);
  assert.equal(seen.closes[0].code, 1006);
});

test('fallback when the browser has no WebTransport, or the edge serves none', async () => {
  const a = open({ WebTransport: null });
  // null means "use the global", which Node does not have
  await until(() => a.seen.open === 1);
  assert.equal(a.ws.transport, 'websocket');
  assert.equal(a.ws.fallbackReason, 'this browser has no WebTransport');
  const b = open({ fetch: fakeFetch({}, 404) });
  await until(() => b.seen.open === 1);
  assert.equal(b.ws.transport, 'websocket');
  assert.match(b.ws.fallbackReason, /serves no WebTransport/);
});

test('a WebTransport connect that hangs falls back after the timeout', async () => {
  FakeWebTransport.behavior = 'hang';
  const { ws, seen } = open({ connectTimeoutMs: 50 });
  await until(() => seen.open === 1);
  assert.equal(ws.transport, 'websocket');
  assert.match(ws.fallbackReason, /timed out/);
});

test('forced WebTransport does not fall back; forced WebSocket never tries WebTransport', async () => {
  FakeWebTransport.behavior = 'fail';
  const a = open({ mode: 'webtransport' });
  await until(() => a.seen.closes.length === 1);
  assert.equal(a.seen.open, 0);
  assert.equal(a.seen.errors, 1);
  assert.equal(a.seen.closes[0].code, 1006);
  assert.equal(FakeWebSocket.instances.length, 0);
  reset();
  const b = open({ mode: 'websocket' });
  await until(() => b.seen.open === 1);
  assert.equal(b.fetch.calls.length, 0);
  assert.equal(FakeWebTransport.instances.length, 0);
  assert.equal(b.ws.fallbackReason, 'WebSocket forced');
});

test('a stale cached hash is fetched again and the connection retried once', async () => {
  rememberInfo(URL_, { url: 'https://edge.test:8080/wt', certificateHashes: [{ algorithm: 'sha-256', value: Buffer.alloc(32, 1).toString('base64') }] });
  FakeWebTransport.plan = ['fail', 'ok'];
  const { ws, seen, fetch } = open();
  await until(() => seen.open === 1);
  assert.equal(ws.transport, 'webtransport');
  assert.equal(fetch.calls.length, 1);
  assert.equal(FakeWebTransport.instances.length, 2);
  assert.deepEqual([...FakeWebTransport.instances[0].init.serverCertificateHashes[0].value], new Array(32).fill(1));
  assert.deepEqual([...FakeWebTransport.instances[1].init.serverCertificateHashes[0].value], new Array(32).fill(7));
});

test('no hashes (a certificate trusted by its chain): none passed', async () => {
  const { seen } = open({ fetch: fakeFetch({ url: 'https://im.example.com/wt' }) });
  await until(() => seen.open === 1);
  assert.equal(FakeWebTransport.instances[0].init.serverCertificateHashes, undefined);
  assert.equal(FakeWebTransport.instances[0].url, 'https://im.example.com/wt');
});

test('subprotocols: 2.1 asked in the URL, base64 ones only over WebSocket', async () => {
  const a = open({}, 'lc.protobuf2.1');
  await until(() => a.seen.open === 1);
  assert.equal(FakeWebTransport.instances[0].url, 'https://edge.test:8080/wt?subprotocol=lc.protobuf2.1');
  assert.equal(a.ws.protocol, 'lc.protobuf2.1');
  const b = open({}, 'lc.proto2base64.3');
  await until(() => b.seen.open === 1);
  assert.equal(b.ws.transport, 'websocket');
});

test('close while connecting: one close event, the session closed', async () => {
  FakeWebTransport.behavior = 'hang';
  const { ws, seen } = open({ connectTimeoutMs: 300 });
  await tick(20);
  ws.close();
  await until(() => seen.closes.length === 1);
  assert.equal(seen.open, 0);
  await tick(20);
  assert.equal(seen.closes.length, 1);
  assert.equal(FakeWebSocket.instances.length, 0);
});

test('addEventListener gets messages too (the SDK keeps its timers with it)', async () => {
  const { ws, seen } = open();
  let n = 0;
  const fn = () => n++;
  ws.addEventListener('message', fn);
  await until(() => seen.open === 1);
  const wt = FakeWebTransport.instances[0];
  wt.serverWrite(encodeFrame(new Uint8Array([1])));
  await until(() => n === 1);
  ws.removeEventListener('message', fn);
  wt.serverWrite(encodeFrame(new Uint8Array([1])));
  await until(() => seen.messages.length === 2);
  assert.equal(n, 1);
});

test('createWebSocketAdapter carries its own options; installGlobal swaps the global', async () => {
  const Forced = createWebSocketAdapter({ mode: 'websocket', WebSocket: FakeWebSocket });
  const ws = new Forced(URL_, 'lc.protobuf2.3');
  await until(() => ws.readyState === 1);
  assert.equal(ws.transport, 'websocket');
  assert.ok(ws instanceof RelayWebSocket);
  const g = { WebSocket: FakeWebSocket };
  assert.equal(installGlobal(g), FakeWebSocket);
  assert.equal(g.WebSocket, RelayWebSocket);
  assert.equal(options().WebSocket, FakeWebSocket);
});

test('a flood of sends and messages keeps order', async () => {
  const { ws, seen } = open();
  await until(() => seen.open === 1);
  const wt = FakeWebTransport.instances[0];
  const N = 2000;
  for (let i = 0; i < N; i++) ws.send(new Uint8Array([i & 0xff, i >> 8]));
  let chunk = [];
  for (let i = 0; i < N; i++) chunk.push(...encodeFrame(new Uint8Array([i & 0xff, i >> 8])));
  wt.serverWrite(new Uint8Array(chunk));
  await until(() => seen.messages.length === N);
  seen.messages.forEach((m, i) => assert.deepEqual([...new Uint8Array(m)], [i & 0xff, i >> 8]));
  await tick(20);
  const w = wt.written();
  assert.equal(w.length, N * 3);
  for (let i = 0; i < N; i++) assert.deepEqual([...w.subarray(i * 3, i * 3 + 3)], [2, i & 0xff, i >> 8]);
});

test('a fallback WebSocket that is RelayWebSocket itself is an error, not a loop', async () => {
  const { seen } = open({ mode: 'websocket', WebSocket: RelayWebSocket });
  await until(() => seen.closes.length === 1);
  assert.equal(seen.open, 0);
  assert.equal(seen.errors, 1);
  assert.match(seen.closes[0].reason, /RelayWebSocket itself/);
});

test('a failure with a cached hash the edge still names is not retried', async () => {
  rememberInfo(URL_, { url: 'https://edge.test:8080/wt', certificateHashes: [{ algorithm: 'sha-256', value: HASH }] });
  FakeWebTransport.plan = ['fail', 'ok'];
  const { ws, seen, fetch } = open();
  await until(() => seen.open === 1);
  assert.equal(ws.transport, 'websocket');
  assert.equal(fetch.calls.length, 1); // asked, and got the same hash
  assert.equal(FakeWebTransport.instances.length, 1);
});

test('when WebSocket fails too (the edge is down), the next connection tries WebTransport again', async () => {
  class DeadWebSocket {
    constructor() {
      setTimeout(() => this.onclose && this.onclose({ code: 1006, reason: 'refused' }), 1);
    }
    close() {}
  }
  FakeWebTransport.plan = ['fail', 'ok'];
  const first = open({ WebSocket: DeadWebSocket });
  await until(() => first.seen.closes.length === 1);
  assert.equal(first.seen.open, 0);
  const second = open();
  await until(() => second.seen.open === 1);
  assert.equal(second.ws.transport, 'webtransport');
  assert.equal(FakeWebTransport.instances.length, 2);
});
