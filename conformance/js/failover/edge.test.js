// Conformance: the official SDK (leancloud-realtime 4.3.1) given two edges
// as RTMServers survives the kill -9 of the edge it is on. The Go test
// e2e/failover_sdk_test.go starts three relaymesh core and two relaymesh
// edge processes (RELAYMESH_EDGES) and kills or restarts an edge when asked
// at RELAYMESH_CONTROL. In each mode the receiver's edge is killed while
// the sender, on the other edge, keeps sending; the receiver must reconnect
// to the other edge and get what it missed: on .3 an unread count that
// names the last message, then the messages through history
// (queryMessages), as an app does; on .1 (pushOfflineMessages) the
// messages themselves, pushed as offline messages.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { Realtime, TextMessage, Event } = require('leancloud-realtime');
const { rnd, once, until } = require('../lib');

const EDGES = (process.env.RELAYMESH_EDGES || '').split(',').filter(Boolean);
const CONTROL = process.env.RELAYMESH_CONTROL;
const APP = process.env.RELAYMESH_FAILOVER_APP;
if (EDGES.length !== 2 || !CONTROL || !APP) throw new Error('RELAYMESH_EDGES (two), RELAYMESH_CONTROL and RELAYMESH_FAILOVER_APP are required');

// control asks the Go test to kill or restart an edge.
function control(action, edge) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: CONTROL.split(':')[0], port: CONTROL.split(':')[1], method: 'POST',
      path: `/${action}?edge=${encodeURIComponent(edge)}` }, res => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`${action}: ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

// edgeOf is the URL of the WebSocket a Realtime is connected on now.
async function edgeOf(rt) {
  const conn = await rt._openPromise;
  return conn._ws && conn._ws.url;
}

const same = (a, b) => a.replace(/\/$/, '') === b.replace(/\/$/, '');

const MODES = [
  { name: 'lc.protobuf2.3: unread count, then history', opts: {}, offline: false },
  { name: 'lc.protobuf2.1 (pushOfflineMessages): offline messages', opts: { pushOfflineMessages: true }, offline: true },
];

for (const mode of MODES) {
  test.describe(mode.name, () => {
    const realtimes = [];
    test.after(async () => {
      for (const rt of realtimes) {
        try { await rt._close(); } catch (e) { /* closed */ }
      }
    });

    test.it('the client on a killed edge comes back on the other and gets what it missed', async () => {
      const rcvId = `rcv-${rnd()}`;
      const sndId = `snd-${rnd()}`;
      const rcvRT = new Realtime({ appId: APP, appKey: 'anykey', RTMServers: EDGES, ...mode.opts });
      realtimes.push(rcvRT);
      const rcv = await rcvRT.createIMClient(rcvId);
      const rcvEdge = await edgeOf(rcvRT);
      const other = EDGES.find(e => !same(e, rcvEdge));
      assert.ok(other, `receiver on ${rcvEdge}, which is not one of ${EDGES}`);
      const sndRT = new Realtime({ appId: APP, appKey: 'anykey', RTMServers: other });
      realtimes.push(sndRT);
      const snd = await sndRT.createIMClient(sndId);
      const conv = await snd.createConversation({ members: [rcvId], name: 'failover', unique: true });

      const live = once(rcv, Event.MESSAGE, m => m.text === 'before');
      await conv.send(new TextMessage('before'));
      await live;

      const disconnected = once(rcv, Event.DISCONNECT, () => true, 15000);
      const reconnected = once(rcv, Event.RECONNECT, () => true, 30000);
      const got = new Map();
      rcv.on(Event.MESSAGE, m => { if (m.cid === conv.id) got.set(m.id, m); });
      const unread = [];
      rcv.on(Event.UNREAD_MESSAGES_COUNT_UPDATE, convs => unread.push(...convs));

      await control('kill', rcvEdge);
      await disconnected;
      // While the receiver is away (the SDK waits a second before it
      // reconnects), the sender keeps sending.
      const m1 = await conv.send(new TextMessage('while away 1'));
      const m2 = await conv.send(new TextMessage('while away 2'));
      await reconnected;
      assert.ok(same(await edgeOf(rcvRT), other), `reconnected on ${await edgeOf(rcvRT)}, want ${other}`);

      if (mode.offline) {
        // .1: the server pushes what the receiver had not acked.
        await until(() => got.has(m1.id) && got.has(m2.id), 15000);
        assert.equal(got.get(m2.id).text, 'while away 2');
      } else {
        // .3: an unread count naming the last message, then history.
        await until(() => unread.some(c => c.id === conv.id && c.lastMessage && c.lastMessage.id === m2.id), 15000);
        const rconv = await rcv.getConversation(conv.id);
        const msgs = await rconv.queryMessages({ limit: 10 });
        const ids = msgs.map(m => m.id);
        assert.ok(ids.includes(m1.id) && ids.includes(m2.id), `history after the reconnect: ${ids}`);
      }
      // The session works on the new edge both ways.
      const back = once(snd, Event.MESSAGE, m => m.text === 'back');
      const rconv = await rcv.getConversation(conv.id);
      await rconv.send(new TextMessage('back'));
      await back;

      await control('restart', rcvEdge); // the next mode needs two edges again
    });
  });
}
