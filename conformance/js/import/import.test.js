// A conversation imported from LeanCloud (`relaymesh import leancloud`,
// issue 12), seen through the official leancloud-realtime 4.3.1 SDK: a
// member finds it under its LeanCloud id with its name, members, creator
// and creation time, pages through its whole history getting LeanCloud's
// message ids and timestamps in order, and sends a new message into it.
//
// Set by e2e/import_test.go (TestImportJS): RELAYMESH_IMPORT_URL (ws://ADDR/),
// RELAYMESH_IMPORT_APP, RELAYMESH_IMPORT_EXPECT (a JSON file: {cid, name,
// creator, members, createdAt, messages: [{id, timestamp, from, data}]
// oldest first}).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { Realtime, TextMessage } = require('leancloud-realtime');

const WS = process.env.RELAYMESH_IMPORT_URL;
const APP = process.env.RELAYMESH_IMPORT_APP;
const EXPECT = process.env.RELAYMESH_IMPORT_EXPECT;
if (!WS || !APP || !EXPECT) throw new Error('RELAYMESH_IMPORT_URL, _APP and _EXPECT must be set');
const want = JSON.parse(fs.readFileSync(EXPECT, 'utf8'));

test.describe('an imported conversation', () => {
  let bob;
  let conv;

  test.before(async () => {
    bob = await new Realtime({ appId: APP, appKey: 'any', RTMServers: WS }).createIMClient('bob');
  });
  test.after(async () => {
    if (bob) await bob.close().catch(() => {});
  });

  test('is found under its LeanCloud id, as it was', async () => {
    conv = await bob.getConversation(want.cid);
    assert.ok(conv, 'getConversation found nothing');
    assert.equal(conv.id, want.cid);
    assert.equal(conv.name, want.name);
    assert.equal(conv.creator, want.creator);
    assert.deepEqual([...conv.members].sort(), [...want.members].sort());
    assert.equal(conv.createdAt.getTime(), want.createdAt);
    const mine = await bob.getQuery().containsMembers([bob.id]).find();
    assert.ok(mine.some(c => c.id === want.cid), 'the query of bob\'s conversations lacks it');
  });

  test('has LeanCloud\'s history, ids and timestamps in order', async () => {
    const it = conv.createMessagesIterator({ limit: 100 });
    const got = [];
    for (;;) {
      const { value, done } = await it.next();
      got.unshift(...value);
      if (done) break;
    }
    assert.equal(got.length, want.messages.length);
    got.forEach((m, i) => {
      const w = want.messages[i];
      assert.equal(m.id, w.id, `message ${i}`);
      assert.equal(m.timestamp.getTime(), w.timestamp, `timestamp of ${w.id}`);
      assert.equal(m.from, w.from, `sender of ${w.id}`);
      assert.equal(m.text, JSON.parse(w.data)._lctext, `text of ${w.id}`);
    });
  });

  test('takes a new message after its history', async () => {
    const sent = await conv.send(new TextMessage('hello from the official SDK'));
    const last = want.messages[want.messages.length - 1];
    assert.ok(sent.timestamp.getTime() > last.timestamp, 'the new message is not after the imported ones');
    const [newest] = await conv.queryMessages({ limit: 1 });
    assert.equal(newest.id, sent.id);
  });
});
