// Conformance: the official LeanCloud realtime SDK (leancloud-realtime 4.3.1)
// against a running relaymesh. The server URL comes from RELAYMESH_URL; the Go
// test conformance/conformance_test.go starts `relaymesh dev` and runs this.
// Each mode (binary .3, noBinary, pushOfflineMessages .1) runs the whole suite
// under its own fresh appId, so runs never see each other's state.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const {
  Realtime,
  TextMessage,
  TypedMessage,
  RecalledMessage,
  Event,
  MessageQueryDirection,
  messageType,
  messageField,
} = require('leancloud-realtime');
const { rnd, once, collect, until } = require('./lib');

const URL = process.env.RELAYMESH_URL;
if (!URL) throw new Error('RELAYMESH_URL is not set');
const API = `http://${new globalThis.URL(URL).host}`;

// spyRaw records every command pushed to client, in wire order, before the
// SDK dispatches it.
const spyRaw = (client, raw) => {
  const dispatch = client._dispatchCommand.bind(client);
  client._dispatchCommand = cmd => {
    raw.push(cmd);
    return dispatch(cmd);
  };
};

// A custom typed message, as apps define them (_lctype 1 with a field).
class CardMessage extends TypedMessage {}
messageType(1)(CardMessage);
messageField(['title'])(CardMessage);

const MODES = [
  { name: 'lc.protobuf2.3', opts: {} },
  { name: 'lc.proto2base64.3 (noBinary)', opts: { noBinary: true } },
  { name: 'lc.protobuf2.1 (pushOfflineMessages)', opts: { pushOfflineMessages: true } },
];

for (const mode of MODES) {
  test.describe(mode.name, () => {
    const appId = `conf-${rnd()}`;
    const realtimes = [];
    const newRealtime = onClient => {
      const plugins = onClient ? [{ name: 'spy', onIMClientCreate: onClient }] : [];
      const rt = new Realtime({ appId, appKey: 'anykey', RTMServers: URL, plugins, ...mode.opts });
      rt.register(CardMessage);
      realtimes.push(rt);
      return rt;
    };
    const login = (id, options) => newRealtime().createIMClient(id, options);

    test.after(async () => {
      for (const rt of realtimes) {
        try { await rt._close(); } catch (e) { /* already closed */ }
      }
    });

    test.it('unique conversation, invitation, text and typed messages both ways', async () => {
      const tomId = `tom-${rnd()}`;
      const jerryId = `jerry-${rnd()}`;
      const tom = await login(tomId);
      const jerry = await login(jerryId);

      const invited = once(jerry, Event.INVITED);
      const c1 = await tom.createConversation({ members: [jerryId], name: 'tom & jerry', unique: true });
      const c2 = await tom.createConversation({ members: [jerryId], name: 'tom & jerry', unique: true });
      assert.equal(c2.id, c1.id, 'unique createConversation must return the same conversation');
      assert.deepEqual([...c1.members].sort(), [jerryId, tomId].sort());
      const [payload, invConv] = await invited;
      assert.equal(invConv.id, c1.id);
      assert.equal(payload.invitedBy, tomId);

      const got = once(jerry, Event.MESSAGE, m => m.text === 'hello jerry');
      const sent = await c1.send(new TextMessage('hello jerry'));
      assert.ok(sent.id, 'sent message has an id');
      assert.ok(sent.timestamp instanceof Date);
      const [msg, conv] = await got;
      assert.ok(msg instanceof TextMessage);
      assert.equal(conv.id, c1.id);
      assert.equal(msg.from, tomId);
      assert.equal(msg.id, sent.id);

      const jc = await jerry.getConversation(c1.id);
      assert.equal(jc.name, 'tom & jerry');
      const card = new CardMessage();
      card.title = 'a card';
      const gotCard = once(tom, Event.MESSAGE, m => m instanceof CardMessage);
      await jc.send(card);
      const [tm] = await gotCard;
      assert.equal(tm.title, 'a card');
      assert.equal(tm.from, jerryId);
      assert.equal(tm.type, 1);
    });

    test.it('queryMessages pages backwards and forwards in ascending order', async () => {
      const a = `a-${rnd()}`;
      const b = `b-${rnd()}`;
      const ca = await login(a);
      await login(b);
      const conv = await ca.createConversation({ members: [b], name: 'history' });
      const sent = [];
      for (let k = 0; k < 25; k++) sent.push(await conv.send(new TextMessage(`m${k}`)));

      const it = conv.createMessagesIterator({ limit: 10 });
      const pages = [];
      for (;;) {
        const { value, done } = await it.next();
        pages.push(value.map(m => m.text));
        if (done) break;
      }
      const texts = k0 => Array.from({ length: 10 }, (_, k) => `m${k0 + k}`);
      assert.deepEqual(pages[0], texts(15));
      assert.deepEqual(pages[1], texts(5));
      assert.deepEqual(pages[2], ['m0', 'm1', 'm2', 'm3', 'm4']);

      const fwd = await conv.queryMessages({
        startTime: sent[0].timestamp,
        startMessageId: sent[0].id,
        startClosed: true,
        direction: MessageQueryDirection.OLD_TO_NEW,
        limit: 10,
      });
      assert.deepEqual(fwd.map(m => m.text), texts(0));
      const fwd2 = await conv.queryMessages({
        startTime: fwd[9].timestamp,
        startMessageId: fwd[9].id,
        direction: MessageQueryDirection.OLD_TO_NEW,
        limit: 10,
      });
      assert.deepEqual(fwd2.map(m => m.text), texts(10));
      const dflt = await conv.queryMessages();
      assert.equal(dflt.length, 20, 'server default limit is 20');
      assert.equal(dflt[19].text, 'm24');
    });

    test.it('recall and edit reach the other member', async () => {
      const a = `a-${rnd()}`;
      const b = `b-${rnd()}`;
      const ca = await login(a);
      const cb = await login(b);
      const conv = await ca.createConversation({ members: [b], name: 'patch' });
      const m1 = await conv.send(new TextMessage('to be recalled'));
      const m2 = await conv.send(new TextMessage('to be edited'));

      const recalled = once(cb, Event.MESSAGE_RECALL);
      await conv.recall(m1);
      const [rm] = await recalled;
      assert.ok(rm instanceof RecalledMessage, 'receiver gets a RecalledMessage');
      assert.equal(rm.id, m1.id);

      const updated = once(cb, Event.MESSAGE_UPDATE);
      await conv.update(m2, new TextMessage('edited'));
      const [um] = await updated;
      assert.equal(um.id, m2.id);
      assert.equal(um.text, 'edited');

      const hist = await conv.queryMessages({ limit: 10 });
      assert.ok(hist[0] instanceof RecalledMessage, 'history shows the recall');
      assert.equal(hist[1].text, 'edited');
    });

    test.it('unread counts (or offline messages) after re-login, and read()', async () => {
      const a = `a-${rnd()}`;
      const b = `b-${rnd()}`;
      const ca = await login(a);
      const cb = await login(b);
      const conv = await ca.createConversation({ members: [b], name: 'unread' });
      // side carries live markers: pushes to one connection are ordered, so
      // once a marker sent after the login is here, everything the login
      // pushed (offline messages, the unread notification) is here too.
      const side = await ca.createConversation({ members: [b], name: 'marker' });
      await cb.close();
      for (let k = 0; k < 3; k++) await conv.send(new TextMessage(`offline ${k}`));
      const unreadCount = async () => {
        const res = await fetch(`${API}/1.2/rtm/clients/${b}/unread-count?conv_id=${conv.id}`,
          { headers: { 'X-LC-Id': appId, 'X-LC-Key': 'anykey' } });
        assert.equal(res.status, 200);
        return (await res.json()).count;
      };
      assert.equal(await unreadCount(), 3, 'the server counts the three as unread');

      // Listeners go on in onIMClientCreate so nothing pushed right after
      // session/opened can be missed.
      const offline = [];
      const raw = [];
      const cb2 = await newRealtime(client => {
        spyRaw(client, raw);
        client.on(Event.MESSAGE, m => offline.push(m));
      }).createIMClient(b);
      const marker = await side.send(new TextMessage('marker'));
      await until(() => offline.some(m => m.id === marker.id));
      if (mode.opts.pushOfflineMessages) {
        // .1: offline messages are pushed as direct{offline:true}, each once.
        assert.deepEqual(offline.map(m => m.text), ['offline 0', 'offline 1', 'offline 2', 'marker']);
        return;
      }
      // .3: an unread notification instead of the messages themselves.
      assert.deepEqual(offline.map(m => m.text), ['marker'], 'no messages replayed on .3, only the live marker');
      const tuples = raw.filter(c => c.unreadMessage).flatMap(c => c.unreadMessage.convs);
      assert.deepEqual(tuples.filter(u => u.cid === conv.id).map(u => u.unread), [3], 'one unread tuple with 3');
      const bc = await until(async () => {
        const c = await cb2.getConversation(conv.id);
        return c.unreadMessagesCount === 3 && c;
      });
      assert.equal(bc.lastMessage.text, 'offline 2');
      await bc.read();
      // read is throttled (1 s) and fire-and-forget: poll the server's count.
      await until(async () => (await unreadCount()) === 0)
        .catch(() => assert.fail('read() did not clear the server\'s unread count in 10 s'));
      await cb2.close();
      const raw3 = [];
      const got3 = [];
      const cb3 = await newRealtime(client => {
        spyRaw(client, raw3);
        client.on(Event.MESSAGE, m => got3.push(m));
      }).createIMClient(b);
      const marker3 = await side.send(new TextMessage('marker 3'));
      await until(() => got3.some(m => m.id === marker3.id));
      const again = await cb3.getConversation(conv.id);
      assert.equal(again.unreadMessagesCount, 0, 'read() cleared the unread count');
      const after = raw3.filter(c => c.unreadMessage).flatMap(c => c.unreadMessage.convs).filter(u => u.cid === conv.id);
      assert.ok(!after.some(u => u.unread > 0), `no unread reported before the marker: ${JSON.stringify(after)}`);
    });

    test.it('a second login with the same tag kicks the first (CONFLICT)', async () => {
      const id = `tag-${rnd()}`;
      const raw = [];
      const first = await newRealtime(c => spyRaw(c, raw)).createIMClient(id, { tag: 'mobile' });
      const conflict = once(first, Event.CONFLICT);
      await login(id, { tag: 'mobile' });
      const [payload] = await conflict;
      // The SDK emits CONFLICT only for session/closed{code:4111} and passes
      // on only the reason: check the code on the wire.
      const kicks = raw.filter(c => c.sessionMessage && c.sessionMessage.code != null);
      assert.equal(kicks.length, 1, 'one session/closed push');
      assert.equal(kicks[0].sessionMessage.code, 4111, 'SESSION_CONFLICT');
      assert.equal(kicks[0].service, 2);
      assert.equal(kicks[0].peerId, id);
      assert.equal(typeof payload.reason, 'string');
      assert.ok(payload.reason.length > 0, 'the reason is not empty');
      assert.equal(payload.reason, kicks[0].sessionMessage.reason);
    });

    test.it('a device that dropped off while another took its tag gets RECONNECT_ERROR 4111, and the other keeps the session', async () => {
      // The first device's socket dies (no logout); while it waits to
      // retry, the user logs in on a second device with the same tag,
      // which kicks nothing. The first device's reconnect, with its still
      // valid session token, must then be refused (the SDK turns the
      // session/closed{4111} reply into RECONNECT_ERROR), not take the
      // tag back from the second device without a word.
      const id = `away-${rnd()}`;
      const watcher = await login(`watch-${rnd()}`);
      const rtA = newRealtime();
      const first = await rtA.createIMClient(id, { tag: 'mobile' });
      const refused = once(first, Event.RECONNECT_ERROR, () => true, 20000);
      let reopened = false;
      first.on(Event.RECONNECT, () => { reopened = true; });
      (await rtA._openPromise)._ws.terminate(); // the SDK retries in 1 s
      await until(async () => (await watcher.ping([id])).length === 0);
      const second = await login(id, { tag: 'mobile' });
      let kicked = false;
      second.on(Event.CONFLICT, () => { kicked = true; });
      const [err] = await refused;
      assert.equal(err.code, 4111, `RECONNECT_ERROR code ${err.code}, want 4111 SESSION_CONFLICT`);
      assert.equal(reopened, false, 'the first device reconnected');
      const conv = await watcher.createConversation({ members: [id], name: 'which device' });
      const got = once(second, Event.MESSAGE, m => m.text === 'still yours');
      await conv.send(new TextMessage('still yours'));
      await got;
      assert.equal(kicked, false, 'the second device was kicked');
    });

    test.it('ping reports online status', async () => {
      const a = `a-${rnd()}`;
      const b = `b-${rnd()}`;
      const ca = await login(a);
      await login(b);
      const online = await ca.ping([b, `nobody-${rnd()}`]);
      assert.deepEqual(online, [b]);
    });
  });
}
