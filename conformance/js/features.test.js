// Conformance for the IM features beyond the basics (issue 4): receipts,
// mentions, transient, will and binary messages, member roles, member mute
// (shutup), the conversation blacklist and notification mute, through the
// official leancloud-realtime 4.3.1 SDK against a running relaymesh
// (RELAYMESH_URL). Every suite uses a fresh appId; every test its own
// clients, so LeanCloud's default per-client limits (30 conv ops/min) hold.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const {
  Realtime,
  TextMessage,
  BinaryMessage,
  Event,
  MessageStatus,
  ConversationMemberRole,
} = require('leancloud-realtime');
const { rnd, once, collect, until, rejects } = require('./lib');

const URL = process.env.RELAYMESH_URL;
if (!URL) throw new Error('RELAYMESH_URL is not set');

// LeanCloud codes (REST-AND-HOOKS.md §3) the tests expect.
const CODE = {
  BLACKLISTED: 4315, // CONVERSATION_BLACKLISTED: a blocked client joins or is added
  UNAUTHORIZED: 4320, // CONVERSATION_OPERATION_UNAUTHORIZED: role too low
  INVALID_TARGET: 4401, // INVALID_MESSAGING_TARGET: not a member
  SILENCED: 4563, // SILIENCED: a muted member sends
};
// OpType values of pushes the tests read raw (the SDK's proto/message.proto).
const OP = { joined: 32 };

test.describe('features (lc.protobuf2.3)', () => {
  const appId = `feat-${rnd()}`;
  const realtimes = [];
  const newRealtime = (onClient, opts = {}) => {
    const plugins = onClient ? [{ name: 'spy', onIMClientCreate: onClient }] : [];
    const rt = new Realtime({ appId, appKey: 'anykey', RTMServers: URL, plugins, ...opts });
    realtimes.push(rt);
    return rt;
  };
  const login = (id, options) => newRealtime().createIMClient(id, options);
  // loginRaw logs in and records every command pushed to the client. The
  // SDK answers member_info_changed by fetching _ConversationMemberInfo
  // over REST, which relaymesh does not serve yet; those pushes are only
  // recorded, not dispatched.
  const loginRaw = async id => {
    const raw = [];
    const client = await newRealtime(c => {
      const dispatch = c._dispatchCommand.bind(c);
      c._dispatchCommand = cmd => {
        raw.push(cmd);
        if (cmd.convMessage && cmd.convMessage.info) return undefined;
        return dispatch(cmd);
      };
    }).createIMClient(id);
    return { client, raw };
  };
  const trio = async name => {
    const ids = ['tom', 'jerry', 'spike'].map(n => `${n}-${rnd()}`);
    const [tom, jerry, spike] = await Promise.all(ids.map(id => loginRaw(id)));
    const conv = await tom.client.createConversation({ members: ids.slice(1), name });
    const [jc, sc] = await Promise.all([jerry.client.getConversation(conv.id), spike.client.getConversation(conv.id)]);
    return { ids, tom, jerry, spike, conv, jc, sc };
  };
  const members = async (client, cid) => {
    const [c] = await client.getQuery().equalTo('objectId', cid).find();
    return [...c.members].sort();
  };

  test.after(async () => {
    for (const rt of realtimes) {
      try { await rt._close(); } catch (e) { /* already closed */ }
    }
  });

  test.it('receipts: delivered from the ack, read from read(), fetchReceiptTimestamps', async () => {
    const tomId = `tom-${rnd()}`;
    const jerryId = `jerry-${rnd()}`;
    const { client: tom, raw } = await loginRaw(tomId);
    const jerry = await login(jerryId);
    const conv = await tom.createConversation({ members: [jerryId], name: 'receipts' });

    const delivered = once(conv, Event.LAST_DELIVERED_AT_UPDATE);
    const got = once(jerry, Event.MESSAGE, m => m.text === 'with receipt');
    const msg = await conv.send(new TextMessage('with receipt'), { receipt: true });
    await got; // jerry's SDK acks it (batched, within 1 s)
    await delivered;
    assert.equal(msg.status, MessageStatus.DELIVERED, 'the receipt marks the message delivered');
    assert.ok(msg.deliveredAt instanceof Date && msg.deliveredAt >= msg.timestamp);
    assert.ok(conv.lastDeliveredAt >= msg.timestamp);
    const dRcp = raw.find(c => c.rcpMessage && c.rcpMessage.id === msg.id);
    assert.equal(dRcp.rcpMessage.cid, conv.id);
    assert.equal(dRcp.rcpMessage.from, jerryId);
    assert.equal(dRcp.rcpMessage.read, null, 'delivered receipts carry no read field');
    assert.equal(dRcp.service, 2);

    const readAt = once(conv, Event.LAST_READ_AT_UPDATE);
    const jc = await jerry.getConversation(conv.id);
    await jc.read();
    await readAt;
    assert.ok(conv.lastReadAt >= msg.timestamp);
    const rRcp = raw.find(c => c.rcpMessage && c.rcpMessage.id === msg.id && c.rcpMessage.read === true);
    assert.ok(rRcp, 'read receipt pushed');
    assert.equal(rRcp.rcpMessage.from, jerryId);

    // A message without r gets no receipt.
    const plainGot = once(jc, Event.MESSAGE, m => m.text === 'no receipt');
    const plain = await conv.send(new TextMessage('no receipt'));
    await plainGot;
    await jc.read();
    // Positive control: a later message with r, acked and read by jerry.
    // The cursor moves that pass the plain message come no later than the
    // ones that pass this one, and the receipts of a move go out oldest
    // message first, one round after another, all to tom's one connection:
    // a receipt for the plain message would be in raw before these.
    const ctrlGot = once(jc, Event.MESSAGE, m => m.text === 'control');
    const ctrl = await conv.send(new TextMessage('control'), { receipt: true });
    await ctrlGot;
    await jc.read();
    const isCtrl = read => c => c.rcpMessage && c.rcpMessage.id === ctrl.id && Boolean(c.rcpMessage.read) === read;
    await until(() => raw.some(isCtrl(false)) && raw.some(isCtrl(true)));
    assert.deepEqual(raw.filter(c => c.rcpMessage && c.rcpMessage.id === plain.id), [], 'no rcp without receipt:true');

    // conv/max_read from another session of tom: message timestamps.
    const tom2 = await login(tomId);
    const c2 = await tom2.getConversation(conv.id);
    await c2.fetchReceiptTimestamps();
    assert.equal(c2.lastReadAt.getTime(), ctrl.timestamp.getTime());
    assert.equal(c2.lastDeliveredAt.getTime(), ctrl.timestamp.getTime());
  });

  test.it('receipts in a group need configBitmap bit 6, which JS never sets', async () => {
    const { ids, tom, jerry, conv, jc } = await trio('group receipts');
    const got = once(jc, Event.MESSAGE, m => m.text === 'group');
    await conv.send(new TextMessage('group'), { receipt: true });
    await got;
    await jc.read();
    // Positive control: a 1:1 message with r from tom, which jerry acks and
    // reads after the group one. jerry's SDK sends acks and reads in the
    // order the conversations got them, the server handles one
    // connection's frames in order and proposes cursor rounds one at a
    // time, and receipts to tom's one connection are ordered: a group
    // receipt would be in raw before the 1:1 ones.
    const one = await tom.client.createConversation({ members: [ids[1]], name: 'one to one' });
    const jo = await jerry.client.getConversation(one.id);
    const oneGot = once(jo, Event.MESSAGE, m => m.text === 'control');
    const ctrl = await one.send(new TextMessage('control'), { receipt: true });
    await oneGot;
    await jo.read();
    const isCtrl = read => c => c.rcpMessage && c.rcpMessage.id === ctrl.id && Boolean(c.rcpMessage.read) === read;
    await until(() => tom.raw.some(isCtrl(false)) && tom.raw.some(isCtrl(true)));
    assert.deepEqual(tom.raw.filter(c => c.rcpMessage && c.rcpMessage.cid === conv.id), [], 'no group receipts without bit 6');
  });

  test.it('mentions: in pushes, history, patches and the unread notification', async () => {
    const { ids, tom, jerry, spike, conv, jc, sc } = await trio('mentions');
    const [, jerryId, spikeId] = ids;

    const jGot = once(jc, Event.MESSAGE, m => m.text === 'hey jerry');
    const sGot = once(sc, Event.MESSAGE, m => m.text === 'hey jerry');
    const m1 = new TextMessage('hey jerry');
    m1.setMentionList([jerryId]);
    await conv.send(m1);
    const [[jm], [sm]] = await Promise.all([jGot, sGot]);
    assert.deepEqual(jm.mentionList, [jerryId]);
    assert.equal(jm.mentioned, true, 'jerry is mentioned');
    assert.equal(sm.mentioned, false, 'spike is not');
    assert.equal(jc.unreadMessagesMentioned, true);

    const m2 = new TextMessage('hey all');
    m2.mentionAll();
    const allGot = once(sc, Event.MESSAGE, m => m.text === 'hey all');
    await conv.send(m2);
    const [am] = await allGot;
    assert.equal(am.mentionedAll, true);
    assert.equal(am.mentioned, true);

    const hist = await jc.queryMessages({ limit: 10 });
    const h1 = hist.find(m => m.id === m1.id);
    const h2 = hist.find(m => m.id === m2.id);
    assert.deepEqual(h1.mentionList, [jerryId]);
    assert.equal(h1.mentioned, true);
    assert.equal(h2.mentionedAll, true);

    // An edit can change who is mentioned.
    const edited = new TextMessage('hey spike');
    edited.setMentionList([spikeId]);
    const upd = once(sc, Event.MESSAGE_UPDATE, m => m.id === m1.id);
    await conv.update(m1, edited);
    const [um] = await upd;
    assert.deepEqual(um.mentionList, [spikeId]);
    assert.equal(um.mentioned, true);

    // Offline: the unread tuple says whether spike was mentioned.
    const quiet = await tom.client.createConversation({ members: [spikeId], name: 'quiet' });
    await spike.client.close();
    await quiet.send(new TextMessage('no mention'));
    const m3 = new TextMessage('look @spike');
    m3.setMentionList([spikeId]);
    await conv.send(m3);
    const spike2 = await login(spikeId);
    const loud = await until(async () => {
      const c = await spike2.getConversation(conv.id);
      return c.unreadMessagesCount > 0 && c;
    });
    assert.equal(loud.unreadMessagesMentioned, true, 'mentioned while offline');
    const q = await until(async () => {
      const c = await spike2.getConversation(quiet.id);
      return c.unreadMessagesCount === 1 && c;
    });
    assert.equal(q.unreadMessagesMentioned, false, 'not mentioned in the quiet conversation');
    // On the wire: the push to jerry carries the mention list.
    const jPush = jerry.raw.find(c => c.directMessage && c.directMessage.id === m1.id);
    assert.deepEqual(jPush.directMessage.mentionPids, [jerryId]);
    assert.equal(jPush.service, 2);
  });

  test.it('sends fired at once: each acked, stored and delivered in the order sent', async () => {
    // The SDK writes the frames back to back; the edge forwards a run of
    // them as one request (edge/batch.go) while jerry's acks go off the
    // line. Under the default 60 sends a minute. Jerry loads the
    // conversation first: the SDK looks up an unknown conversation once
    // per message received, and 40 lookups at once would pass the 30 ops
    // a minute (LeanCloud's limit; its refusals make the SDK drop those
    // messages from its events).
    const tomId = `tom-${rnd()}`;
    const jerryId = `jerry-${rnd()}`;
    const tom = await login(tomId);
    const jerry = await login(jerryId);
    const conv = await tom.createConversation({ members: [jerryId], name: 'burst' });
    await jerry.getConversation(conv.id);
    const got = collect(jerry, Event.MESSAGE);
    const texts = Array.from({ length: 40 }, (_, k) => `burst-${k}`);
    const sent = await Promise.all(texts.map(t => conv.send(new TextMessage(t))));
    assert.equal(new Set(sent.map(m => m.id)).size, texts.length, 'every send acked with its own id');
    for (let k = 1; k < sent.length; k++) {
      assert.ok(sent[k].timestamp > sent[k - 1].timestamp, `send ${k} stored after send ${k - 1}`);
    }
    await until(() => got.length >= texts.length);
    assert.deepEqual(got.map(([m]) => m.text), texts, 'jerry got each once, in order');
    assert.deepEqual(got.map(([m]) => m.id), sent.map(m => m.id), 'with the ids the sends were acked with');
    const hist = await conv.queryMessages({ limit: 100 });
    assert.deepEqual(hist.map(m => m.text), texts, 'history in the order sent');
  });

  test.it('transient messages: acked and delivered, never stored or offline', async () => {
    const tomId = `tom-${rnd()}`;
    const jerryId = `jerry-${rnd()}`;
    const tom = await login(tomId);
    const jerry = await login(jerryId);
    const conv = await tom.createConversation({ members: [jerryId], name: 'transient' });
    const got = once(jerry, Event.MESSAGE, m => m.text === 'typing');
    const sent = await conv.send(new TextMessage('typing'), { transient: true });
    assert.ok(sent.id, 'a transient send is acked');
    await got;
    await conv.send(new TextMessage('stored'));
    const hist = await conv.queryMessages({ limit: 10 });
    assert.deepEqual(hist.map(m => m.text), ['stored'], 'history has no transient message');

    // side carries a live marker after jerry's next login: pushes to one
    // connection are ordered, so once it is here, whatever the login pushed
    // (the unread notification, offline messages) is here too.
    const side = await tom.createConversation({ members: [jerryId], name: 'marker' });
    await jerry.close();
    await conv.send(new TextMessage('typing again'), { transient: true });
    const offline = [];
    const raw = [];
    const jerry2 = await newRealtime(c => {
      const dispatch = c._dispatchCommand.bind(c);
      c._dispatchCommand = cmd => { raw.push(cmd); return dispatch(cmd); };
      c.on(Event.MESSAGE, m => offline.push(m));
    }).createIMClient(jerryId);
    const marker = await side.send(new TextMessage('marker'));
    await until(() => offline.some(m => m.id === marker.id));
    assert.deepEqual(offline.map(m => m.text), ['marker'], 'nothing delivered from the conversation');
    const tuples = raw.filter(c => c.unreadMessage).flatMap(c => c.unreadMessage.convs).filter(u => u.cid === conv.id);
    assert.deepEqual(tuples.map(u => [u.unread, u.mid]), [[1, hist[0].id]], 'only the stored message is unread');
    const jc = await until(async () => {
      const c = await jerry2.getConversation(conv.id);
      return c.unreadMessagesCount === 1 && c;
    });
    assert.equal(jc.lastMessage.text, 'stored');
  });

  test.it('will messages: held until the sender drops, then delivered and stored', async () => {
    const tomId = `tom-${rnd()}`;
    const jerryId = `jerry-${rnd()}`;
    const tomRt = newRealtime();
    const tom = await tomRt.createIMClient(tomId);
    const jerry = await login(jerryId);
    const conv = await tom.createConversation({ members: [jerryId], name: 'will' });
    const jc = await jerry.getConversation(conv.id);
    const got = collect(jerry, Event.MESSAGE);
    const will = await conv.send(new TextMessage('tom went away'), { will: true });
    assert.ok(will.id, 'a will send is acked');
    // Positive control: a plain message sent after the will reaches jerry
    // on the same connection, so a will delivered at once would be first.
    const ctrl = await conv.send(new TextMessage('still here'));
    await until(() => got.some(([x]) => x.id === ctrl.id));
    assert.deepEqual(got.map(([x]) => x.text), ['still here'], 'the will is not delivered while tom is connected');
    assert.deepEqual((await jc.queryMessages({ limit: 10 })).map(x => x.text), ['still here'], 'nor in history yet');

    await tomRt._close(); // the connection drops: no session/close
    const [[m]] = await Promise.all([once(jerry, Event.MESSAGE, x => x.text === 'tom went away')]);
    assert.equal(m.from, tomId);
    assert.equal(m.id, will.id);
    const hist = await jc.queryMessages({ limit: 10 });
    assert.deepEqual(hist.map(x => x.text), ['still here', 'tom went away']);
  });

  test.it('will messages: an explicit close() drops them undelivered', async () => {
    const tomId = `tom-${rnd()}`;
    const jerryId = `jerry-${rnd()}`;
    const tom = await login(tomId);
    const jerry = await login(jerryId);
    const conv = await tom.createConversation({ members: [jerryId], name: 'will-close' });
    const jc = await jerry.getConversation(conv.id);
    const got = collect(jerry, Event.MESSAGE);
    await conv.send(new TextMessage('never sent'), { will: true });
    await tom.close(); // session/close: a deliberate logout, not a drop
    // Positive control: close() resolves on the server's closed reply, after
    // it handled the close (and would have fired the will); a message tom
    // sends from a new session then reaches jerry after any such push.
    const tom2 = await login(tomId);
    const ctrl = await (await tom2.getConversation(conv.id)).send(new TextMessage('back again'));
    await until(() => got.some(([x]) => x.id === ctrl.id));
    assert.deepEqual(got.map(([x]) => x.text), ['back again'], 'a will is not delivered on an explicit close');
    assert.deepEqual((await jc.queryMessages({ limit: 10 })).map(x => x.text), ['back again'], 'nor stored');
  });

  for (const opts of [{}, { noBinary: true }]) {
    test.it(`binary messages round trip${opts.noBinary ? ' (noBinary)' : ''}`, async () => {
      const tomId = `tom-${rnd()}`;
      const jerryId = `jerry-${rnd()}`;
      const tom = await newRealtime(null, opts).createIMClient(tomId);
      const jerry = await newRealtime(null, opts).createIMClient(jerryId);
      const conv = await tom.createConversation({ members: [jerryId], name: 'binary' });
      const bytes = Uint8Array.from([0, 1, 2, 127, 128, 254, 255]);
      const got = once(jerry, Event.MESSAGE);
      const sent = await conv.send(new BinaryMessage(bytes.buffer));
      const [m] = await got;
      assert.ok(m instanceof BinaryMessage, 'received a BinaryMessage');
      assert.deepEqual(new Uint8Array(m.buffer), bytes);
      assert.equal(m.id, sent.id);
      const jc = await jerry.getConversation(conv.id);
      const [h] = await jc.queryMessages({ limit: 1 });
      assert.ok(h instanceof BinaryMessage, 'history returns a BinaryMessage');
      assert.deepEqual(new Uint8Array(h.buffer), bytes);
    });
  }

  test.it('roles: the Owner makes a Manager; Members cannot kick, mute, block or change roles', async () => {
    const { ids, tom, jerry, spike, conv, jc, sc } = await trio('roles');
    const [tomId, jerryId, spikeId] = ids;
    const all = [...ids].sort();

    await rejects(sc.remove(jerryId), CODE.UNAUTHORIZED, 'a Member kicks');
    await rejects(sc.muteMembers(jerryId), CODE.UNAUTHORIZED, 'a Member mutes');
    await rejects(sc.blockMembers(jerryId), CODE.UNAUTHORIZED, 'a Member blocks');
    await rejects(sc.updateMemberRole(jerryId, ConversationMemberRole.MANAGER), CODE.UNAUTHORIZED, 'a Member promotes');
    assert.deepEqual(await members(tom.client, conv.id), all, 'refusals change nothing');
    assert.deepEqual((await conv.queryMutedMembers()).results, []);
    assert.deepEqual((await conv.queryBlockedMembers()).results, []);
    assert.ok(!spike.raw.some(c => c.convMessage && c.convMessage.info), 'no role change pushed');

    await conv.updateMemberRole(jerryId, ConversationMemberRole.MANAGER);
    const changed = await until(() => spike.raw.find(c => c.convMessage && c.convMessage.info));
    assert.equal(changed.convMessage.info.pid, jerryId);
    assert.equal(changed.convMessage.info.role, 'Manager');
    assert.equal(changed.convMessage.initBy, tomId);
    assert.equal(changed.convMessage.cid, conv.id);
    assert.equal(changed.service, 2);
    const jChanged = await until(() => jerry.raw.find(c => c.convMessage && c.convMessage.info));
    // The real change is the positive control: a push for one of spike's
    // refused attempts (kick, mute, block, promote) would have reached
    // jerry's connection before it.
    const before = jerry.raw.slice(0, jerry.raw.indexOf(jChanged)).filter(c => c.convMessage && c.convMessage.cid === conv.id);
    assert.deepEqual(before.map(c => c.op), [OP.joined], 'before the Owner\'s change jerry got only the invitation');
    assert.equal(jChanged.convMessage.initBy, tomId, 'the first role change jerry saw is the Owner\'s');

    // A Manager cannot act on the Owner: partial failure, nothing changes.
    const r = await jc.remove([tomId]);
    assert.deepEqual(r.successfulClientIds, []);
    assert.equal(r.failures[0].code, CODE.UNAUTHORIZED);
    assert.deepEqual(r.failures[0].clientIds, [tomId]);
    assert.deepEqual(await members(tom.client, conv.id), all);

    // A Manager kicks a Member.
    const kicked = once(sc, Event.KICKED);
    const k = await jc.remove([spikeId]);
    assert.deepEqual(k.successfulClientIds, [spikeId]);
    await kicked;
    assert.deepEqual(await members(tom.client, conv.id), [tomId, jerryId].sort());

    // Demoted, jerry may still invite but not kick.
    await conv.updateMemberRole(jerryId, ConversationMemberRole.MEMBER);
    await until(() => jerry.raw.filter(c => c.convMessage && c.convMessage.info).length === 2);
    await jc.add([spikeId]);
    await rejects(jc.remove([spikeId]), CODE.UNAUTHORIZED, 'a demoted Manager kicks');
    assert.deepEqual(await members(tom.client, conv.id), all);
  });

  test.it('member mute: muteMembers, pushes, muted members cannot send, queryMutedMembers pages', async () => {
    const { ids, conv, jc, sc } = await trio('shutup');
    const [tomId, jerryId, spikeId] = ids;
    const muted = once(sc, Event.MUTED);
    const membersMuted = once(jc, Event.MEMBERS_MUTED);
    const r = await conv.muteMembers([spikeId]);
    assert.deepEqual(r.successfulClientIds, [spikeId]);
    assert.deepEqual(r.failures, []);
    const [[mp], [mmp]] = await Promise.all([muted, membersMuted]);
    assert.equal(mp.mutedBy, tomId);
    assert.deepEqual(mmp.members, [spikeId]);
    assert.equal(mmp.mutedBy, tomId);

    const jGot = collect(jc, Event.MESSAGE);
    await rejects(sc.send(new TextMessage('let me speak')), CODE.SILENCED, 'a muted member sends');
    await rejects(sc.send(new TextMessage('typing'), { transient: true }), CODE.SILENCED, 'a muted member sends transiently');
    const hist = await conv.queryMessages({ limit: 10 });
    assert.equal(hist.length, 0, 'nothing stored');

    const self = await conv.muteMembers([tomId]);
    assert.equal(self.failures[0].code, CODE.UNAUTHORIZED, 'nobody mutes the Owner');

    await conv.muteMembers([jerryId]);
    const sorted = [jerryId, spikeId].sort();
    const p1 = await conv.queryMutedMembers({ limit: 1 });
    assert.deepEqual(p1.results, [sorted[0]]);
    assert.equal(p1.next, '1', 'next is a decimal offset');
    const p2 = await conv.queryMutedMembers({ limit: 1, next: p1.next });
    assert.deepEqual(p2.results, [sorted[1]]);
    assert.equal(p2.next, null);

    const unmuted = once(sc, Event.UNMUTED);
    const rr = await conv.unmuteMembers([spikeId, jerryId]);
    assert.deepEqual([...rr.successfulClientIds].sort(), sorted);
    await unmuted;
    await sc.send(new TextMessage('free again'));
    await until(() => jGot.some(([m]) => m.text === 'free again'));
    assert.ok(!jGot.some(([m]) => m.text === 'let me speak'));
    assert.deepEqual((await conv.queryMutedMembers()).results, []);
  });

  test.it('blacklist: blockMembers removes and bars, queryBlockedMembers, unblockMembers', async () => {
    const { ids, tom, spike, conv, jc, sc } = await trio('blacklist');
    const [tomId, jerryId, spikeId] = ids;
    const blocked = once(sc, Event.BLOCKED);
    const membersBlocked = once(jc, Event.MEMBERS_BLOCKED);
    const r = await conv.blockMembers([spikeId]);
    assert.deepEqual(r.successfulClientIds, [spikeId]);
    const [[bp], [mbp]] = await Promise.all([blocked, membersBlocked]);
    assert.equal(bp.blockedBy, tomId);
    assert.deepEqual(mbp.members, [spikeId]);
    assert.deepEqual(await members(tom.client, conv.id), [tomId, jerryId].sort(), 'blocking removes the member');

    await rejects(sc.join(), CODE.BLACKLISTED, 'a blocked client joins');
    const add = await jc.add([spikeId]);
    assert.deepEqual(add.successfulClientIds, []);
    assert.equal(add.failures[0].code, CODE.BLACKLISTED);
    assert.deepEqual(add.failures[0].clientIds, [spikeId]);
    await rejects(sc.send(new TextMessage('let me in')), CODE.INVALID_TARGET, 'a blocked client sends');
    assert.deepEqual(await members(tom.client, conv.id), [tomId, jerryId].sort(), 'refusals change nothing');
    // Nor does a blocked client get the conversation's messages. The
    // unblocked push below is tom's next action, so it reaches spike's
    // connection after this message would have.
    const jWhile = once(jc, Event.MESSAGE, m => m.text === 'while blocked');
    const whileBlocked = await conv.send(new TextMessage('while blocked'));
    await jWhile;

    await rejects(jc.blockMembers([tomId]), CODE.UNAUTHORIZED, 'a Member blocks');
    await rejects(jc.unblockMembers([spikeId]), CODE.UNAUTHORIZED, 'a Member unblocks');
    const q = await conv.queryBlockedMembers();
    assert.deepEqual(q.results, [spikeId]);
    assert.equal(q.next, null);

    const unblocked = once(sc, Event.UNBLOCKED);
    const membersUnblocked = once(jc, Event.MEMBERS_UNBLOCKED);
    const u = await conv.unblockMembers([spikeId]);
    assert.deepEqual(u.successfulClientIds, [spikeId]);
    await Promise.all([unblocked, membersUnblocked]);
    assert.ok(!spike.raw.some(c => c.directMessage && c.directMessage.id === whileBlocked.id), 'a blocked client gets no messages');
    assert.deepEqual((await conv.queryBlockedMembers()).results, []);
    await sc.join();
    assert.deepEqual(await members(tom.client, conv.id), [...ids].sort());
  });

  test.it('notification mute: mute() and unmute() set mu', async () => {
    const tomId = `tom-${rnd()}`;
    const jerryId = `jerry-${rnd()}`;
    const tom = await login(tomId);
    await login(jerryId);
    const conv = await tom.createConversation({ members: [jerryId], name: 'mu' });
    await conv.mute();
    assert.equal(conv.muted, true);
    assert.deepEqual(conv.mutedMembers, [tomId]);
    const other = await login(tomId);
    const [fresh] = await other.getQuery().equalTo('objectId', conv.id).find();
    assert.deepEqual(fresh.mutedMembers, [tomId], 'mu is stored');
    await conv.unmute();
    assert.equal(conv.muted, false);
    const [again] = await other.getQuery().equalTo('objectId', conv.id).find();
    assert.deepEqual(again.mutedMembers, [], 'unmute clears mu');
  });
  test.it('authorization: an outsider cannot send or read history; only the sender may patch', async () => {
    const tomId = `tom-${rnd()}`;
    const jerryId = `jerry-${rnd()}`;
    const tom = await login(tomId);
    const jerry = await login(jerryId);
    const outsider = await login(`eve-${rnd()}`);
    const conv = await tom.createConversation({ members: [jerryId], name: 'authz' });
    const got = once(jerry, Event.MESSAGE);
    const sent = await conv.send(new TextMessage('members only'));
    const [received] = await got;

    const ec = await outsider.getConversation(conv.id);
    await rejects(ec.send(new TextMessage('let me in')), CODE.INVALID_TARGET, 'an outsider sends');
    await rejects(ec.queryMessages({ limit: 10 }), 4312, 'an outsider reads history');
    const jc = await jerry.getConversation(conv.id);
    // The SDK refuses a Message from someone else client-side; a bare
    // {id, timestamp} goes to the server, which must refuse it.
    const ref = { id: received.id, timestamp: received.timestamp };
    await rejects(jc.recall(ref), 4403, 'a member recalls someone else\'s message');
    await rejects(jc.update(ref, new TextMessage('forged edit')), 4403, 'a member edits someone else\'s message');

    const hist = await conv.queryMessages({ limit: 10 });
    assert.deepEqual(hist.map(m => [m.id, m.text]), [[sent.id, 'members only']], 'nothing changed');
  });
});
