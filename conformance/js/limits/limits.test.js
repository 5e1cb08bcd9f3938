// Conformance for the configurable limits (issue 4 "Limits") through the
// official leancloud-realtime 4.3.1 SDK, against a relaymesh dev started
// with small limits (e2e/conformance_test.go TestConformanceLimitsJS):
//   --max-members RELAYMESH_MAX_MEMBERS, --max-offline-per-conv
//   RELAYMESH_MAX_OFFLINE, --max-unread-convs RELAYMESH_MAX_UNREAD.
// The defaults (500, 100, 50) are the same code paths with other numbers.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Realtime, TextMessage, Event } = require('leancloud-realtime');
const { rnd, sleep, until, rejects } = require('../lib');

const URL = process.env.RELAYMESH_URL;
const MAX_MEMBERS = Number(process.env.RELAYMESH_MAX_MEMBERS);
const MAX_OFFLINE = Number(process.env.RELAYMESH_MAX_OFFLINE);
const MAX_UNREAD = Number(process.env.RELAYMESH_MAX_UNREAD);
if (!URL || !MAX_MEMBERS || !MAX_OFFLINE || !MAX_UNREAD) {
  throw new Error('RELAYMESH_URL and RELAYMESH_MAX_MEMBERS/OFFLINE/UNREAD must be set');
}

const CONVERSATION_FULL = 4304;

const appId = `limits-${rnd()}`;
const realtimes = [];
const newRealtime = (onClient, opts = {}) => {
  const plugins = onClient ? [{ name: 'spy', onIMClientCreate: onClient }] : [];
  const rt = new Realtime({ appId, appKey: 'anykey', RTMServers: URL, plugins, ...opts });
  realtimes.push(rt);
  return rt;
};
const login = id => newRealtime().createIMClient(id);

test.after(async () => {
  for (const rt of realtimes) {
    try { await rt._close(); } catch (e) { /* closed */ }
  }
});

test(`a normal conversation holds at most ${MAX_MEMBERS} members (4304)`, async () => {
  const alice = await login(`a-${rnd()}`);
  const others = Array.from({ length: MAX_MEMBERS }, (_, k) => `m${k}-${rnd()}`);
  await rejects(alice.createConversation({ members: others, name: 'too big' }), CONVERSATION_FULL,
    `creating with ${MAX_MEMBERS + 1} members`);

  const conv = await alice.createConversation({ members: others.slice(0, MAX_MEMBERS - 1), name: 'full' });
  assert.equal(conv.members.length, MAX_MEMBERS);
  const extra = `x-${rnd()}`;
  const res = await conv.add([extra]);
  assert.deepEqual(res.successfulClientIds, [], 'nobody was added');
  assert.equal(res.failures.length, 1);
  assert.equal(res.failures[0].code, CONVERSATION_FULL);
  assert.deepEqual(res.failures[0].clientIds, [extra]);
  const fresh = await alice.getConversation(conv.id, true);
  assert.equal(fresh.members.length, MAX_MEMBERS);

  // Chatrooms have no member cap.
  const room = await alice.createChatRoom({ name: 'no cap' });
  const joined = [];
  for (let k = 0; k < MAX_MEMBERS + 1; k++) {
    const c = await login(`r${k}-${rnd()}`);
    await (await c.getConversation(room.id)).join();
    joined.push(c);
  }
  assert.equal(await room.count(), MAX_MEMBERS + 2);
});

test(`a .1 login gets the newest ${MAX_OFFLINE} offline messages per conversation; history keeps all`, async () => {
  const alice = await login(`a-${rnd()}`);
  const bobId = `b-${rnd()}`;
  const conv = await alice.createConversation({ members: [bobId], name: 'offline fifo' });
  // side carries a live marker after bob's login: pushes to one connection
  // are ordered, so once it is here every offline push is here too.
  const side = await alice.createConversation({ members: [bobId], name: 'marker' });
  const total = MAX_OFFLINE + 3;
  for (let k = 0; k < total; k++) await conv.send(new TextMessage(`m${k}`));

  const got = [];
  const bob = await newRealtime(c => c.on(Event.MESSAGE, m => got.push(m.text)), { pushOfflineMessages: true })
    .createIMClient(bobId);
  await side.send(new TextMessage('marker'));
  await until(() => got.includes('marker'));
  const want = Array.from({ length: MAX_OFFLINE }, (_, k) => `m${total - MAX_OFFLINE + k}`);
  assert.deepEqual(got, [...want, 'marker'], 'the newest ones, oldest first, then the live marker');
  const bc = await bob.getConversation(conv.id);
  const hist = await bc.queryMessages({ limit: 100 });
  assert.equal(hist.length, total, 'the older ones stay in history');
});

test(`a .3 login notifies the ${MAX_UNREAD} most recently active conversations; the rest stay in history`, async () => {
  const alice = await login(`a-${rnd()}`);
  const bobId = `b-${rnd()}`;
  const convs = [];
  for (let k = 0; k < MAX_UNREAD + 1; k++) {
    const c = await alice.createConversation({ members: [bobId], name: `unread ${k}` });
    await c.send(new TextMessage(`in ${k}`));
    convs.push(c);
    await sleep(5); // distinct last-message times
  }
  // side carries a live marker after bob's login: pushes to one connection
  // are ordered, so once it is here every unread notification is here too.
  // raw records the pushes in wire order (the SDK handles unread
  // notifications asynchronously, after a conv/query).
  const side = await alice.createConversation({ members: [bobId], name: 'marker' });
  const raw = [];
  const bob = await newRealtime(c => {
    const dispatch = c._dispatchCommand.bind(c);
    c._dispatchCommand = cmd => {
      raw.push(cmd);
      return dispatch(cmd);
    };
  }).createIMClient(bobId);
  const marker = await side.send(new TextMessage('marker'));
  await until(() => raw.some(c => c.directMessage && c.directMessage.id === marker.id));
  const tuples = raw.filter(c => c.unreadMessage).flatMap(c => c.unreadMessage.convs);
  const newest = convs.slice(1).map(c => c.id).sort();
  assert.deepEqual(tuples.map(u => u.cid).sort(), newest, 'the most recently active ones, each once');
  for (const u of tuples) assert.equal(u.unread, 1);
  const oldest = await bob.getConversation(convs[0].id);
  const hist = await oldest.queryMessages({ limit: 10 });
  assert.deepEqual(hist.map(m => m.text), ['in 0'], 'the un-notified conversation keeps its message');
});
