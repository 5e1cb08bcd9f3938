// Conformance for chatrooms (transient conversations, tr:true; issue 4)
// through the official leancloud-realtime 4.3.1 SDK against a running
// relaymesh (RELAYMESH_URL): createChatRoom, join, fan-out to the joined
// sessions only, count() as the online count, history, no member events,
// one chatroom per session, and invites refused with 4308. Fresh appId and
// clients per test keep LeanCloud's default per-client limits
// (30 conv ops/min).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Realtime, TextMessage, Event } = require('leancloud-realtime');
const { rnd, once, collect, until, rejects } = require('./lib');

const URL = process.env.RELAYMESH_URL;
if (!URL) throw new Error('RELAYMESH_URL is not set');

// LeanCloud codes (REST-AND-HOOKS.md §3, SDK error.js) the tests expect.
const CODE = {
  NOT_ALLOWED: 4308, // CONVERSATION_NOT_ALLOWED: invite or kick in a chatroom
  INVALID_TARGET: 4401, // INVALID_MESSAGING_TARGET: send without joining
};

test.describe('chatrooms (lc.protobuf2.3)', () => {
  const appId = `room-${rnd()}`;
  const realtimes = [];
  const login = id => {
    const rt = new Realtime({ appId, appKey: 'anykey', RTMServers: URL });
    realtimes.push(rt);
    return rt.createIMClient(id);
  };
  // spyRaw records every command pushed to client, in wire order, before
  // the SDK dispatches it.
  const spyRaw = (client, raw) => {
    const dispatch = client._dispatchCommand.bind(client);
    client._dispatchCommand = cmd => {
      raw.push(cmd);
      return dispatch(cmd);
    };
  };

  test.after(async () => {
    for (const rt of realtimes) {
      try { await rt._close(); } catch (e) { /* already closed */ }
    }
  });

  test.it('createChatRoom, join, send to joined sessions only, count, close, history', async () => {
    const [tomId, jerryId, spikeId, nobodyId] = ['tom', 'jerry', 'spike', 'nobody'].map(n => `${n}-${rnd()}`);
    const [tom, jerry, spike, nobody] = await Promise.all([tomId, jerryId, spikeId, nobodyId].map(login));
    // side is a normal conversation for the markers at the end, made (and
    // its invitations delivered) before anything is collected.
    const invited = [jerry, nobody].map(c => once(c, Event.INVITED));
    const side = await tom.createConversation({ members: [jerryId, nobodyId], name: 'side' });
    await Promise.all(invited);
    const events = [tom, jerry, spike, nobody].map(c => [
      ...[Event.MEMBERS_JOINED, Event.MEMBERS_LEFT, Event.INVITED, Event.KICKED].map(ev => collect(c, ev)),
    ]);
    const nobodyGot = collect(nobody, Event.MESSAGE);

    const room = await tom.createChatRoom({ name: 'lobby' });
    assert.ok(room.id);
    assert.equal(room.transient, true);
    const [jr, sr] = await Promise.all([jerry.getConversation(room.id), spike.getConversation(room.id)]);
    assert.equal(jr.transient, true, 'conv/query says tr');
    await rejects(jr.send(new TextMessage('early')), CODE.INVALID_TARGET, 'a send before joining');
    await Promise.all([jr.join(), sr.join()]);
    assert.equal(await room.count(), 3, 'creator and two joined sessions are online');

    const jerryGot = once(jerry, Event.MESSAGE, m => m.text === 'hello room');
    const spikeGot = once(spike, Event.MESSAGE, m => m.text === 'hello room');
    const sent = await room.send(new TextMessage('hello room'));
    assert.ok(sent.id);
    const [[jm, jconv]] = await Promise.all([jerryGot, spikeGot]);
    assert.equal(jm.from, tomId);
    assert.equal(jconv.id, room.id);

    const hist = await sr.queryMessages({ limit: 10 });
    assert.deepEqual(hist.map(m => m.text), ['hello room'], 'chatroom history is stored');

    await spike.close();
    await until(async () => (await room.count()) === 2);

    // Positive control: markers in side, sent after everything above, reach
    // tom, jerry and nobody on their connections after any stray push.
    // spike got 'hello room' after the joins, and nothing after its close.
    const jSide = await jerry.getConversation(side.id);
    const seen = [once(tom, Event.MESSAGE, m => m.text === 'marker 2'), once(jerry, Event.MESSAGE, m => m.text === 'marker 1')];
    await side.send(new TextMessage('marker 1'));
    await jSide.send(new TextMessage('marker 2'));
    await Promise.all(seen);
    await until(() => nobodyGot.filter(([m]) => m.text.startsWith('marker')).length === 2);
    assert.deepEqual(nobodyGot.map(([m]) => m.text), ['marker 1', 'marker 2'], 'a client in no chatroom gets nothing');
    for (const evs of events) {
      for (const got of evs) assert.equal(got.length, 0, 'no member events in a chatroom');
    }
  });

  test.it('joining a second chatroom leaves the first; invite and kick are refused', async () => {
    const [tomId, jerryId, otherId] = ['tom', 'jerry', 'other'].map(n => `${n}-${rnd()}`);
    const [tom, jerry] = await Promise.all([tomId, jerryId].map(login));
    await login(otherId);
    const [first, second] = await Promise.all([
      tom.createChatRoom({ name: 'first' }),
      (await login(`host-${rnd()}`)).createChatRoom({ name: 'second' }),
    ]);
    const jFirst = await jerry.getConversation(first.id);
    await jFirst.join();
    assert.equal(await first.count(), 2);

    const jSecond = await jerry.getConversation(second.id);
    await jSecond.join();
    assert.equal(await first.count(), 1, 'joining the second chatroom left the first');
    assert.equal(await second.count(), 2);
    await rejects(jFirst.send(new TextMessage('stale')), CODE.INVALID_TARGET, 'a send to the chatroom left');

    await rejects(first.add([otherId]), CODE.NOT_ALLOWED, 'inviting another client');
    await rejects(second.remove([jerryId]), CODE.NOT_ALLOWED, 'kicking another client');

    await jSecond.quit();
    assert.equal(await second.count(), 1, 'quit leaves');
  });

  test.it('a will message in a chatroom reaches the joined sessions when the sender drops', async () => {
    const [tomId, jerryId, spikeId] = ['tom', 'jerry', 'spike'].map(n => `${n}-${rnd()}`);
    const tomRt = new Realtime({ appId, appKey: 'anykey', RTMServers: URL });
    realtimes.push(tomRt); // closed by test.after if the test fails first
    const tom = await tomRt.createIMClient(tomId);
    const [jerry, spike] = await Promise.all([jerryId, spikeId].map(login));
    const room = await tom.createChatRoom({ name: 'will-room' });
    const jr = await jerry.getConversation(room.id);
    await jr.join();
    const spikeGot = collect(spike, Event.MESSAGE); // online, never joined
    const jerryGot = collect(jerry, Event.MESSAGE);

    const sc = await spike.getConversation(room.id);
    await rejects(sc.send(new TextMessage('spike will'), { will: true }), CODE.INVALID_TARGET,
      'a will from a session not in the chatroom');

    const will = await room.send(new TextMessage('tom left the room'), { will: true });
    assert.ok(will.id, 'a will send in a chatroom is acked');
    // Positive control: a plain chatroom message sent after the will, at the
    // same priority, reaches jerry after a will delivered at once would have.
    const ctrl = await room.send(new TextMessage('still in the room'));
    await until(() => jerryGot.some(([m]) => m.id === ctrl.id));
    assert.deepEqual(jerryGot.map(([m]) => m.text), ['still in the room'], 'the will is held while tom is connected');

    await tomRt._close(); // the connection drops: no session/close
    const [m] = await until(() => jerryGot.find(([x]) => x.text === 'tom left the room'));
    assert.equal(m.from, tomId);
    assert.equal(m.id, will.id);
    // Positive control for spike: a message in a normal conversation, sent
    // after jerry got the will, reaches spike after any fan-out of the will.
    const side = await jerry.createConversation({ members: [spikeId], name: 'side' });
    const marker = await side.send(new TextMessage('marker'));
    await until(() => spikeGot.some(([x]) => x.id === marker.id));
    assert.deepEqual(spikeGot.map(([x]) => x.text), ['marker'], 'a client not in the chatroom gets nothing');
    const hist = await jr.queryMessages({ limit: 10 });
    assert.ok(hist.some(x => x.id === will.id), 'the fired will is in chatroom history');
  });

  test.it('a dropped connection that reconnects is back in its chatroom without joining again', async () => {
    const [tomId, jerryId] = ['tom', 'jerry'].map(n => `${n}-${rnd()}`);
    const tom = await login(tomId);
    const jerryRt = new Realtime({ appId, appKey: 'anykey', RTMServers: URL });
    realtimes.push(jerryRt);
    const jerry = await jerryRt.createIMClient(jerryId);
    const room = await tom.createChatRoom({ name: 'sticky' });
    await (await jerry.getConversation(room.id)).join();
    assert.equal(await room.count(), 2);

    const reconnected = once(jerry, Event.RECONNECT, () => true, 15000);
    const connection = await jerryRt._openPromise;
    connection._ws.terminate(); // the socket dies; the SDK reconnects with its session token
    await reconnected;

    const got = once(jerry, Event.MESSAGE, m => m.text === 'after the reconnect');
    await room.send(new TextMessage('after the reconnect'));
    const [m] = await got;
    assert.equal(m.from, tomId);
    assert.equal(await room.count(), 2, 'still two members online');
  });

  test.it('no offline messages and no unread notification for a chatroom', async () => {
    const [tomId, jerryId] = ['tom', 'jerry'].map(n => `${n}-${rnd()}`);
    const tom = await login(tomId);
    const jerry = await login(jerryId);
    const room = await tom.createChatRoom({ name: 'ephemeral' });
    await (await jerry.getConversation(room.id)).join();
    await jerry.close();
    await room.send(new TextMessage('while jerry was away'));

    // side carries a live marker after each login: pushes to one
    // connection are ordered, so once it is here, whatever the login pushed
    // (offline messages, the unread notification) is here too.
    const side = await tom.createConversation({ members: [jerryId], name: 'side' });
    for (const opts of [{}, { pushOfflineMessages: true }]) {
      const got = [];
      const raw = [];
      const rt = new Realtime({
        appId, appKey: 'anykey', RTMServers: URL, ...opts,
        plugins: [{
          name: 'spy',
          onIMClientCreate: c => {
            spyRaw(c, raw);
            c.on(Event.MESSAGE, (msg, conv) => got.push({ msg, conv }));
          },
        }],
      });
      realtimes.push(rt);
      const again = await rt.createIMClient(jerryId);
      const marker = await side.send(new TextMessage('marker'));
      await until(() => got.some(x => x.msg.id === marker.id));
      assert.deepEqual(got.filter(x => x.conv.id === room.id).map(x => x.msg.text), [],
        `no offline chatroom messages${opts.pushOfflineMessages ? ' (.1)' : ''}`);
      const tuples = raw.filter(c => c.unreadMessage).flatMap(c => c.unreadMessage.convs);
      assert.ok(!tuples.some(u => u.cid === room.id), 'no unread notification for the chatroom');
      const hist = await (await again.getConversation(room.id)).queryMessages({ limit: 10 });
      assert.deepEqual(hist.map(x => x.text), ['while jerry was away'], 'history is stored');
      await again.close();
    }
  });
});
