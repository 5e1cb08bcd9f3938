import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { chooseEdge, RelayWebSocket } from '../src/index.js';
import { _resetForTests } from '../src/transport.js';
import { FakeWebTransport, FakeWebSocket, reset, until, HASH } from './fakes.js';

beforeEach(() => {
  reset();
  _resetForTests();
});

// edge starts an HTTP server on loopback answering /v1/route with route(base)
// and /healthz after delayMs.
async function edge(route, delayMs = 0) {
  const hits = [];
  const srv = http.createServer((req, res) => {
    hits.push(req.url);
    const base = 'ws://' + req.headers.host + '/';
    if (req.url.startsWith('/v1/route')) {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(route(base)));
    } else if (req.url === '/healthz') {
      setTimeout(() => res.end('ok\n'), delayMs);
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise(r => srv.listen(0, '127.0.0.1', r));
  const url = 'http://127.0.0.1:' + srv.address().port;
  return { url, ws: url.replace('http', 'ws') + '/', hits, close: () => new Promise(r => srv.close(r)) };
}

test('chooseEdge orders the edges by RTT and remembers the WebTransport info', async () => {
  const slow = await edge(base => ({ server: base, secondary: base, ttl: 3600 }), 60);
  const fast = await edge(base => ({
    server: base,
    secondary: slow.ws,
    ttl: 3600,
    wt: { url: 'https://127.0.0.1:1/wt', certificateHashes: [{ algorithm: 'sha-256', value: HASH }] },
  }));
  try {
    const r = await chooseEdge({ routers: [slow.url, fast.url], appId: 'app 1', probes: 2 });
    assert.deepEqual(r.servers, [fast.ws, slow.ws]);
    assert.ok(r.rtts[slow.ws] >= 60, JSON.stringify(r.rtts));
    assert.ok(r.rtts[fast.ws] < r.rtts[slow.ws]);
    assert.ok(fast.hits.includes('/v1/route?appId=app+1'), fast.hits.join());
    assert.equal(fast.hits.filter(h => h === '/healthz').length, 2);
    // The transport uses the remembered hash: no /v1/webtransport fetch.
    const calls = [];
    const ws = new RelayWebSocket(fast.ws, 'lc.protobuf2.3', {
      WebTransport: FakeWebTransport,
      WebSocket: FakeWebSocket,
      fetch: async u => {
        calls.push(u);
        throw new Error('unexpected fetch');
      },
    });
    await until(() => ws.readyState === 1);
    assert.equal(ws.transport, 'webtransport');
    assert.deepEqual(calls, []);
    assert.equal(FakeWebTransport.instances[0].url, 'https://127.0.0.1:1/wt');
  } finally {
    await slow.close();
    await fast.close();
  }
});

test('chooseEdge: an unreachable edge sorts last; no router at all is an error', async () => {
  const e = await edge(base => ({ server: base, secondary: 'ws://127.0.0.1:1/', ttl: 3600 }));
  try {
    const r = await chooseEdge({ routers: [e.url, 'http://127.0.0.1:1'], probes: 1, timeoutMs: 500 });
    assert.deepEqual(r.servers, [e.ws, 'ws://127.0.0.1:1/']);
    assert.equal(r.rtts['ws://127.0.0.1:1/'], Infinity);
  } finally {
    await e.close();
  }
  await assert.rejects(chooseEdge({ routers: ['http://127.0.0.1:1'], probes: 1 }), /no router answered/);
  await assert.rejects(chooseEdge({ routers: [] }), TypeError);
});

test('chooseEdge ignores junk in a route answer', async () => {
  const e = await edge(() => ({ server: 'javascript:alert(1)', secondary: 42, wt: 'nope' }));
  const good = await edge(base => ({ server: base, secondary: base }));
  try {
    const r = await chooseEdge({ routers: [e.url, good.url], probes: 1 });
    assert.deepEqual(r.servers, [good.ws]);
  } finally {
    await e.close();
    await good.close();
  }
});
