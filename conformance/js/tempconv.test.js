// Conformance for temporary conversations (issue 4): `_tmp:` ids, at most
// 10 members, a TTL that comes back as expiredAt, fetched by tempConvIds,
// not in where-queries, 4323 after expiry; through the official
// leancloud-realtime 4.3.1 SDK against a running relaymesh (RELAYMESH_URL).
// Every test uses its own clients (LeanCloud's 30 conv ops/min per client).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Realtime, TextMessage, Event, TemporaryConversation } = require('leancloud-realtime');
const { rnd, sleep, once, rejects } = require('./lib');

const URL = process.env.RELAYMESH_URL;
if (!URL) throw new Error('RELAYMESH_URL is not set');

const CODE = {
  CONVERSATION_FULL: 4304, // more than 10 members in a temporary conversation
  TEMPORARY_CONVERSATION_EXPIRED: 4323,
};

test.describe('temporary conversations', () => {
  const appId = `tmp-${rnd()}`;
  const realtimes = [];
  const login = id => {
    const rt = new Realtime({ appId, appKey: 'anykey', RTMServers: URL });
    realtimes.push(rt);
    return rt.createIMClient(id);
  };

  test.after(async () => {
    for (const rt of realtimes) {
      try { await rt._close(); } catch (e) { /* already closed */ }
    }
  });

  test.it('create, deliver, resolve by _tmp id, expiredAt, history, no where-query row', async () => {
    const tomId = `tom-${rnd()}`;
    const jerryId = `jerry-${rnd()}`;
    const [tom, jerry] = await Promise.all([login(tomId), login(jerryId)]);
    const before = Date.now();
    const conv = await tom.createTemporaryConversation({ members: [jerryId], ttl: 3600 });
    assert.ok(conv instanceof TemporaryConversation, 'a TemporaryConversation');
    assert.match(conv.id, /^_tmp:.+/);
    assert.ok(conv.expiredAt instanceof Date, 'expiredAt is set');
    assert.ok(Math.abs(conv.expiredAt - (before + 3600 * 1000)) < 60 * 1000, `expiredAt ${conv.expiredAt}`);
    assert.equal(conv.expired, false);

    const got = once(jerry, Event.MESSAGE, m => m.text === 'hello tmp');
    const sent = await conv.send(new TextMessage('hello tmp'));
    const [msg, jconv] = await got;
    assert.equal(msg.id, sent.id);
    assert.equal(jconv.id, conv.id);
    assert.ok(jconv instanceof TemporaryConversation, 'the receiver resolved it as temporary');

    const fetched = await jerry.getConversation(conv.id, true); // conv/query{tempConvIds}
    assert.ok(fetched instanceof TemporaryConversation);
    assert.deepEqual([...fetched.members].sort(), [jerryId, tomId].sort());
    assert.ok(fetched.expiredAt instanceof Date);
    assert.ok(Math.abs(fetched.expiredAt - conv.expiredAt) < 60 * 1000, `fetched expiredAt ${fetched.expiredAt}`);

    const reply = once(tom, Event.MESSAGE, m => m.text === 'hi back');
    await fetched.send(new TextMessage('hi back'));
    await reply;

    const history = await conv.queryMessages({ limit: 10 });
    assert.deepEqual(history.map(m => m.text), ['hello tmp', 'hi back']);

    const rows = await tom.getQuery().equalTo('objectId', conv.id).find();
    assert.equal(rows.length, 0, 'no _Conversation row');
    const mine = await tom.getQuery().containsMembers([tomId]).find();
    assert.ok(!mine.some(c => c.id === conv.id), 'not in member queries');
  });

  test.it('at most 10 members', async () => {
    const tom = await login(`tom-${rnd()}`);
    const others = Array.from({ length: 10 }, (_, i) => `m${i}-${rnd()}`);
    await rejects(tom.createTemporaryConversation({ members: others }), CODE.CONVERSATION_FULL, '11 members');
    const conv = await tom.createTemporaryConversation({ members: others.slice(1) });
    assert.equal(conv.members.length, 10);
    // No ttl: the default of one day.
    assert.ok(Math.abs(conv.expiredAt - (Date.now() + 86400 * 1000)) < 60 * 1000, `expiredAt ${conv.expiredAt}`);
  });

  test.it('expiry: 4323, and tempConvIds no longer finds it', async () => {
    const tomId = `tom-${rnd()}`;
    const jerryId = `jerry-${rnd()}`;
    const [tom, jerry] = await Promise.all([login(tomId), login(jerryId)]);
    const conv = await tom.createTemporaryConversation({ members: [jerryId], ttl: 2 });
    await conv.send(new TextMessage('soon gone'));
    const jconv = await jerry.getConversation(conv.id, true);
    assert.ok(jconv instanceof TemporaryConversation, 'found before expiry');
    assert.equal(jconv.id, conv.id);
    assert.deepEqual((await jconv.queryMessages({ limit: 10 })).map(m => m.text), ['soon gone'], 'readable before expiry');
    await sleep(2500);
    assert.equal(conv.expired, true);
    await rejects(conv.send(new TextMessage('too late')), CODE.TEMPORARY_CONVERSATION_EXPIRED, 'send after expiry');
    await rejects(jconv.queryMessages({ limit: 10 }), CODE.TEMPORARY_CONVERSATION_EXPIRED, 'history after expiry');
    assert.equal(await jerry.getConversation(conv.id, true), null, 'tempConvIds omits it');
  });
});
