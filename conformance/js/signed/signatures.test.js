// Conformance: signatures with the official SDK (leancloud-realtime 4.3.1)
// against a relaymesh dev whose config requires login and conversation
// signatures for one app (e2e/conformance_test.go TestConformanceSignedJS).
// Signatures are hex HMAC-SHA1 keyed with the master key over LeanCloud's
// strings (REST-AND-HOOKS.md §4).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Realtime } = require('leancloud-realtime');

const URL = process.env.RELAYMESH_SIGNED_URL;
const APP = process.env.RELAYMESH_SIGNED_APP;
const MASTER = process.env.RELAYMESH_SIGNED_MASTER;
if (!URL || !APP || !MASTER) throw new Error('RELAYMESH_SIGNED_URL/APP/MASTER not set');

const rnd = () => Math.random().toString(36).slice(2, 10);
const sign = (key, msg) => crypto.createHmac('sha1', key).update(msg).digest('hex');

// signer returns the SDK's three factories, signing with key; ageMs dates
// the signatures in the past (LeanCloud's validity is 6 hours).
function signer(key, ageMs = 0) {
  const stamp = () => ({ timestamp: Date.now() - ageMs, nonce: rnd() });
  return {
    signatureFactory: clientId => {
      const { timestamp, nonce } = stamp();
      return { signature: sign(key, `${APP}:${clientId}::${timestamp}:${nonce}`), timestamp, nonce };
    },
    conversationSignatureFactory: (convId, clientId, members, action) => {
      const { timestamp, nonce } = stamp();
      const ids = [...members].sort().join(':');
      // SDK 4.3.1 passes 'add'/'remove'; the signed string says invite/kick,
      // as LeanCloud's signing-server examples map them.
      const act = { add: 'invite', remove: 'kick' }[action] || action;
      const msg = action === 'create'
        ? `${APP}:${clientId}:${ids}:${timestamp}:${nonce}`
        : `${APP}:${clientId}:${convId}:${ids}:${timestamp}:${nonce}:${act}`;
      return { signature: sign(key, msg), timestamp, nonce };
    },
    blacklistSignatureFactory: (clientId, convId, members, action) => {
      const { timestamp, nonce } = stamp();
      const ids = [...members].sort().join(':');
      return { signature: sign(key, `${APP}:${clientId}:${convId}:${ids}:${timestamp}:${nonce}:${action}`), timestamp, nonce };
    },
  };
}

const realtimes = [];
const login = (id, factories = {}) => {
  const rt = new Realtime({ appId: APP, appKey: 'key', RTMServers: URL });
  realtimes.push(rt);
  return rt.createIMClient(id, factories);
};

test.after(async () => {
  for (const rt of realtimes) {
    try { await rt._close(); } catch (e) { /* closed */ }
  }
});

async function rejectsWith(p, code, what) {
  await assert.rejects(p, err => {
    assert.equal(err.code, code, `${what}: got ${err.code} ${err.message}`);
    return true;
  }, what);
}

test('login needs a valid signature (4102 otherwise)', async () => {
  await rejectsWith(login(`u-${rnd()}`), 4102, 'unsigned login');
  await rejectsWith(login(`u-${rnd()}`, signer('wrong-master')), 4102, 'badly signed login');
  const id = `u-${rnd()}`;
  const c = await login(id, signer(MASTER));
  assert.equal(c.id, id, 'the signed login is the client it signed for');
  const [online] = await Promise.all([c.ping([id])]);
  assert.deepEqual(online, [id], 'and it is online');
});

test('create and invite need conversation signatures (4302 otherwise)', async () => {
  const good = signer(MASTER);
  const a = `a-${rnd()}`;
  const b = `b-${rnd()}`;
  const c = `c-${rnd()}`;
  // Logged in with a valid login signature but no conversation factory.
  const bare = await login(a, { signatureFactory: good.signatureFactory });
  await rejectsWith(bare.createConversation({ members: [b], name: 'x' }), 4302, 'unsigned create');
  const forged = await login(`f-${rnd()}`, {
    signatureFactory: good.signatureFactory,
    conversationSignatureFactory: signer('wrong-master').conversationSignatureFactory,
  });
  await rejectsWith(forged.createConversation({ members: [b], name: 'x' }), 4302, 'forged create');

  const alice = await login(`s-${rnd()}`, good);
  const conv = await alice.createConversation({ members: [b], name: 'signed' });
  assert.deepEqual([...conv.members].sort(), [alice.id, b].sort(), 'the signed create made the conversation it signed');
  const added = await conv.add([c]);
  assert.deepEqual(added.successfulClientIds, [c]);
  await conv.fetch();
  assert.ok(conv.members.includes(c));

  // A forged kick changes nothing.
  const mallory = await login(b, {
    signatureFactory: good.signatureFactory,
    conversationSignatureFactory: signer('wrong-master').conversationSignatureFactory,
  });
  const mc = await mallory.getConversation(conv.id);
  await rejectsWith(mc.remove([c]), 4302, 'forged kick');
  await conv.fetch();
  assert.ok(conv.members.includes(c), 'a forged kick removed nobody');
});

test('blacklist operations need blacklist signatures (4546 otherwise)', async () => {
  const good = signer(MASTER);
  const b = `b-${rnd()}`;
  const c = `c-${rnd()}`;
  const owner = await login(`o-${rnd()}`, good);
  const conv = await owner.createConversation({ members: [b, c], name: 'bl' });
  const forger = await login(owner.id, {
    signatureFactory: good.signatureFactory,
    conversationSignatureFactory: good.conversationSignatureFactory,
    blacklistSignatureFactory: signer('wrong-master').blacklistSignatureFactory,
  });
  const fc = await forger.getConversation(conv.id);
  await rejectsWith(fc.blockMembers([b]), 4546, 'forged block');
  const none = await conv.queryBlockedMembers();
  assert.deepEqual(none.results, [], 'a forged block blocked nobody');
  const res = await conv.blockMembers([b]);
  assert.deepEqual(res.successfulClientIds, [b]);
  const blocked = await conv.queryBlockedMembers();
  assert.deepEqual(blocked.results, [b]);
});

test('signatures older than 6 hours are refused; younger ones work', async () => {
  const HOUR = 3600 * 1000;
  const stale = signer(MASTER, 6 * HOUR + 60 * 1000);
  const aged = signer(MASTER, 5 * HOUR);
  await rejectsWith(login(`u-${rnd()}`, stale), 4102, 'a 6 h 1 min old login signature');
  const good = signer(MASTER);
  const b = `b-${rnd()}`;
  const c = `c-${rnd()}`;
  const alice = await login(`s-${rnd()}`, {
    signatureFactory: aged.signatureFactory, // 5 hours old: still valid
    conversationSignatureFactory: stale.conversationSignatureFactory,
    blacklistSignatureFactory: stale.blacklistSignatureFactory,
  });
  await rejectsWith(alice.createConversation({ members: [b], name: 'stale' }), 4302, 'a stale create signature');
  const owner = await login(alice.id, good);
  const conv = await owner.createConversation({ members: [b, c], name: 'fresh' });
  const ac = await alice.getConversation(conv.id);
  await rejectsWith(ac.add([`d-${rnd()}`]), 4302, 'a stale invite signature');
  await rejectsWith(ac.blockMembers([b]), 4546, 'a stale block signature');
  await conv.fetch();
  assert.deepEqual([...conv.members].sort(), [alice.id, b, c].sort(), 'stale signatures changed nothing');
  assert.deepEqual((await conv.queryBlockedMembers()).results, []);
});

test('join and quit need conversation signatures (4302 otherwise; nothing changes)', async () => {
  const good = signer(MASTER);
  const b = `b-${rnd()}`;
  const owner = await login(`o-${rnd()}`, good);
  const conv = await owner.createConversation({ members: [b], name: 'join-quit' });
  const members = async () => { await conv.fetch(); return [...conv.members].sort(); };
  const before = await members();

  // Logged in with a valid login signature but no conversation factory:
  // the SDK's join() is conv/add of itself, quit() conv/remove of itself.
  const eve = await login(`e-${rnd()}`, { signatureFactory: good.signatureFactory });
  const ec = await eve.getConversation(conv.id);
  await rejectsWith(ec.join(), 4302, 'unsigned join');
  assert.deepEqual(await members(), before, 'an unsigned join added nobody');
  const forged = await login(`f-${rnd()}`, {
    signatureFactory: good.signatureFactory,
    conversationSignatureFactory: signer('wrong-master').conversationSignatureFactory,
  });
  await rejectsWith((await forged.getConversation(conv.id)).join(), 4302, 'forged join');
  assert.deepEqual(await members(), before, 'a forged join added nobody');

  const bob = await login(b, { signatureFactory: good.signatureFactory });
  await rejectsWith((await bob.getConversation(conv.id)).quit(), 4302, 'unsigned quit');
  assert.deepEqual(await members(), before, 'an unsigned quit removed nobody');

  // Signed, both work.
  const carol = await login(`c-${rnd()}`, good);
  const cc = await carol.getConversation(conv.id);
  await cc.join();
  assert.ok((await members()).includes(carol.id), 'a signed join adds the client');
  await cc.quit();
  assert.deepEqual(await members(), before, 'a signed quit removes it again');
});
