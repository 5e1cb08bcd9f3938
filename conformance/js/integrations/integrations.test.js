// Conformance: sensitive-word filtering, IM hooks and offline push with the
// official SDK (leancloud-realtime 4.3.1) against a relaymesh dev whose
// config points one app's hooks and push webhook at the HTTP server this file
// runs (e2e/conformance_test.go TestConformanceIntegrationsJS;
// docs/OPERATIONS.md "Sensitive words, hooks and offline push").
//
// The server listens on RELAYMESH_INTEG_HOOK_PORT and serves:
//   POST /received               _messageReceived (a per-hook URL)
//   POST /1.1/functions/<hook>   every other hook (hook_base_url)
//   POST /push                   the push webhook (push_webhook_url)
// Every request must carry a valid X-Relaymesh-Signature: hex
// HMAC-SHA256(masterKey, X-Relaymesh-Timestamp + "." + body) (hooks/doc.go).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const { Realtime, TextMessage, Event } = require('leancloud-realtime');

const URL = process.env.RELAYMESH_INTEG_URL;
const APP = process.env.RELAYMESH_INTEG_APP;
const MASTER = process.env.RELAYMESH_INTEG_MASTER;
const PORT = Number(process.env.RELAYMESH_INTEG_HOOK_PORT);
// A second app with a static push template (push_template) and no hooks.
const TEMPLATE_APP = process.env.RELAYMESH_INTEG_TEMPLATE_APP;
if (!URL || !APP || !MASTER || !PORT || !TEMPLATE_APP) {
  throw new Error('RELAYMESH_INTEG_URL/APP/MASTER/HOOK_PORT/TEMPLATE_APP not set');
}

const rnd = () => Math.random().toString(36).slice(2, 10);
const { until } = require('../lib');

// metric reads one series of relaymesh's /metrics: {labels: value}.
const METRICS = `${URL.replace(/^ws/, 'http').replace(/\/$/, '')}/metrics`;
async function metric(name) {
  const text = await (await fetch(METRICS)).text();
  const out = {};
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-z_]+)(\{[^}]*\})?\s+(\S+)$/);
    if (m && m[1] === name) out[m[2] || ''] = Number(m[3]);
  }
  return out;
}

// LeanCloud codes (hooks/doc.go).
const CODE = {
  MESSAGE_REJECTED: 4402, // MESSAGE_REJECTED_BY_APP
  CONVERSATION_REJECTED: 4305, // CONVERSATION_REJECTED_BY_APP
};

// ---- hook and push server -------------------------------------------------

const calls = []; // {path, hook, headers, body, json}
const badSignatures = []; // requests whose signature did not verify
const waiters = new Set();

function verify(req, body) {
  const ts = req.headers['x-relaymesh-timestamp'];
  const sig = req.headers['x-relaymesh-signature'];
  if (!ts || !sig) return 'unsigned';
  if (!/^\d+$/.test(ts) || Math.abs(Date.now() - Number(ts)) > 5 * 60 * 1000) return `stale timestamp ${ts}`;
  const want = crypto.createHmac('sha256', MASTER).update(ts).update('.').update(body).digest();
  let got;
  try { got = Buffer.from(sig, 'hex'); } catch (e) { return 'signature not hex'; }
  if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) return 'bad signature';
  return null;
}

// answer returns the JSON reply for a verified hook call; a number is an
// HTTP status to fail with.
function answer(path, ev) {
  if (path === '/received') {
    const text = ev.content || '';
    if (text.includes('hook fails')) return 500;
    if (text.includes('drop me')) return { drop: true, code: 42, detail: 'dropped by the conformance hook' };
    if (text.includes('rewrite me')) {
      return { content: JSON.stringify({ _lctype: -1, _lctext: 'rewritten by the hook' }) };
    }
    return {};
  }
  if (path === '/1.1/functions/_conversationStart') {
    const attr = ev.attr || {};
    if (attr.name === 'forbidden') return { reject: true, code: 77, detail: 'forbidden by the conformance hook' };
    return {};
  }
  if (path === '/1.1/functions/_conversationAdd') {
    if ((ev.members || []).some(m => m.startsWith('banned-'))) return { reject: true, code: 78, detail: 'no banned members' };
    return {};
  }
  if (path === '/1.1/functions/_conversationRemove') {
    if ((ev.members || []).some(m => m.startsWith('keep-'))) return { reject: true, code: 79, detail: 'keep-* stay' };
    return {};
  }
  if (path === '/1.1/functions/_conversationUpdate') {
    const attr = ev.attr || {};
    if (attr.name === 'forbidden name') return { reject: true, code: 80, detail: 'name not allowed' };
    if (attr.name === 'rename me') return { attr: { name: 'renamed by the hook' } };
    return {};
  }
  if (path === '/1.1/functions/_receiversOffline') {
    const text = ev.content || '';
    if (text.includes('skip push')) return { skip: true };
    if (text.includes('hook pushes')) {
      return { pushMessage: JSON.stringify({ alert: `hook push for ${ev.offlinePeers.join(',')}` }) };
    }
    return {}; // the default content: pushData, else the template
  }
  return {};
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', c => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const problem = verify(req, body);
    let json;
    try { json = JSON.parse(body.toString('utf8')); } catch (e) { json = undefined; }
    const call = { path: req.url, method: req.method, hook: req.headers['x-relaymesh-hook'], headers: req.headers, body: body.toString('utf8'), json };
    if (problem) {
      badSignatures.push({ ...call, problem });
      res.writeHead(401, { 'Content-Type': 'application/json' });
      res.end('{"error":"bad signature"}');
      return;
    }
    calls.push(call);
    for (const w of waiters) w();
    const reply = req.url === '/push' ? '' : answer(req.url, json || {});
    if (typeof reply === 'number') {
      res.writeHead(reply, { 'Content-Type': 'application/json' });
      res.end('{"code":1,"error":"the conformance hook fails on purpose"}');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(req.url === '/push' ? '' : JSON.stringify(reply));
  });
});
// Listening starts at load time, before any test makes relaymesh call it.
const listening = new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(PORT, '127.0.0.1', resolve);
});

// waitCall resolves with the first recorded call matching pred.
function waitCall(pred, ms = 10000) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const c = calls.find(pred);
      if (!c) return false;
      clearTimeout(timer);
      waiters.delete(check);
      resolve(c);
      return true;
    };
    const timer = setTimeout(() => {
      waiters.delete(check);
      reject(new Error('timed out waiting for a hook or push call'));
    }, ms);
    if (!check()) waiters.add(check);
  });
}

// ---- SDK helpers ----------------------------------------------------------

const realtimes = [];
const login = (id, appId = APP) => {
  const rt = new Realtime({ appId, appKey: 'anykey', RTMServers: URL });
  realtimes.push(rt);
  return rt.createIMClient(id);
};

test.before(() => listening);

test.after(async () => {
  for (const rt of realtimes) {
    try { await rt._close(); } catch (e) { /* closed */ }
  }
  await new Promise(r => server.close(r));
});

function nextMessage(client, convId, ms = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off(Event.MESSAGE, handler);
      reject(new Error(`${client.id}: no message in ${convId}`));
    }, ms);
    function handler(message, conv) {
      if (conv.id !== convId) return;
      clearTimeout(timer);
      client.off(Event.MESSAGE, handler);
      resolve(message);
    }
    client.on(Event.MESSAGE, handler);
  });
}

async function history(conv) {
  const msgs = await conv.queryMessages({ limit: 50 });
  return msgs.map(m => m.text);
}

async function rejects(p, code, what) {
  let caught;
  await assert.rejects(p, e => {
    caught = e;
    assert.equal(e.code, code, `${what}: got ${e.code} ${e.message}`);
    return true;
  }, what);
  return caught;
}

// ---- tests ----------------------------------------------------------------

test('group messages are filtered with the shipped word list; 1:1 messages are not', async () => {
  const alice = await login(`a-${rnd()}`);
  const bob = await login(`b-${rnd()}`);
  const carol = await login(`c-${rnd()}`);

  const group = await alice.createConversation({ members: [bob.id, carol.id], name: 'filtered group' });
  assert.equal(group.members.length, 3);
  const got = nextMessage(bob, group.id);
  const sent = await group.send(new TextMessage('you bastard, buy followers here'));
  const m = await got;
  assert.equal(m.id, sent.id, 'bob gets the message alice sent');
  assert.equal(m.text, 'you ***, *** here', 'bob gets the filtered text');
  const bg = await bob.getConversation(group.id);
  assert.deepEqual(await history(bg), ['you ***, *** here'], 'history is filtered');

  const direct = await alice.createConversation({ members: [bob.id], name: 'direct' });
  assert.equal(direct.members.length, 2);
  const got2 = nextMessage(bob, direct.id);
  await direct.send(new TextMessage('you bastard'));
  assert.equal((await got2).text, 'you bastard', '1:1 text is not filtered');
  assert.deepEqual(await history(direct), ['you bastard']);
});

test('_messageReceived: drop refuses the send with 4402 and stores nothing; content rewrite reaches the receiver', async () => {
  const alice = await login(`a-${rnd()}`);
  const bob = await login(`b-${rnd()}`);
  const conv = await alice.createConversation({ members: [bob.id], name: 'hooked' });

  const bobGot = [];
  bob.on(Event.MESSAGE, (msg, c) => { if (c.id === conv.id) bobGot.push(msg.text); });

  const err = await rejects(conv.send(new TextMessage('please drop me')), CODE.MESSAGE_REJECTED, 'dropped send');
  assert.equal(err.appCode, 42, 'the hook code travels as appCode');
  const ev = (await waitCall(c => c.path === '/received' && c.json && c.json.convId === conv.id)).json;
  assert.equal(ev.fromPeer, alice.id);
  assert.ok(ev.toPeers.includes(bob.id), `toPeers ${ev.toPeers}`);
  assert.equal(JSON.parse(ev.content)._lctext, 'please drop me');
  assert.equal(calls.find(c => c.path === '/received').hook, '_messageReceived');

  const got = nextMessage(bob, conv.id);
  await conv.send(new TextMessage('please rewrite me'));
  assert.equal((await got).text, 'rewritten by the hook');

  const got2 = nextMessage(bob, conv.id);
  await conv.send(new TextMessage('plain'));
  assert.equal((await got2).text, 'plain');

  assert.deepEqual(bobGot, ['rewritten by the hook', 'plain'], 'bob never got the dropped message');
  const bc = await bob.getConversation(conv.id);
  assert.deepEqual((await history(bc)).sort(), ['plain', 'rewritten by the hook'], 'history has no dropped message');
});

test('_conversationStart: a rejected conversation fails with 4305', async () => {
  const alice = await login(`a-${rnd()}`);
  const bob = `b-${rnd()}`;
  const err = await rejects(alice.createConversation({ members: [bob], name: 'forbidden' }),
    CODE.CONVERSATION_REJECTED, 'rejected create');
  assert.equal(err.appCode, 77, 'the hook code travels as appCode');
  const ev = (await waitCall(c => c.hook === '_conversationStart' && c.json && c.json.initBy === alice.id)).json;
  assert.equal(ev.attr.name, 'forbidden');
  assert.deepEqual([...ev.members].sort(), [alice.id, bob].sort());
  assert.equal(calls.find(c => c.hook === '_conversationStart').path, '/1.1/functions/_conversationStart');

  const ok = await alice.createConversation({ members: [bob], name: 'allowed' });
  assert.deepEqual([...ok.members].sort(), [alice.id, bob].sort(), 'other names are allowed');
  const ev2 = (await waitCall(c => c.hook === '_conversationStart' && c.json && c.json.attr && c.json.attr.name === 'allowed')).json;
  assert.equal(ev2.initBy, alice.id, 'the hook saw the allowed create too');
});

test('offline push: an offline member causes a webhook POST carrying the pushData', async () => {
  const alice = await login(`a-${rnd()}`);
  const bob = await login(`b-${rnd()}`);
  const carol = `c-${rnd()}`; // never logs in: offline
  const conv = await alice.createConversation({ members: [bob.id, carol], name: 'push' });

  const pushData = { alert: 'you have a new message', badge: 1, sound: 'default', custom: { k: 'v' } };
  const got = nextMessage(bob, conv.id);
  await conv.send(new TextMessage('hello carol'), { pushData });
  assert.equal((await got).text, 'hello carol');

  const call = await waitCall(c => c.path === '/push' && c.json && c.json.convId === conv.id);
  const req = call.json;
  assert.equal(req.appId, APP);
  assert.equal(req.from, alice.id);
  assert.deepEqual(req.to, [carol], 'only the offline member is pushed');
  assert.deepEqual(req.payload, pushData);
  assert.equal(typeof req.timestamp, 'number');
});

test('_messageSent reports the stored message with its online and offline members', async () => {
  const alice = await login(`a-${rnd()}`);
  const bob = await login(`b-${rnd()}`);
  const carol = `c-${rnd()}`; // offline
  const conv = await alice.createConversation({ members: [bob.id, carol], name: 'sent hook' });
  const sent = await conv.send(new TextMessage('track me'));
  const ev = (await waitCall(c => c.hook === '_messageSent' && c.json && c.json.msgId === sent.id)).json;
  assert.equal(ev.fromPeer, alice.id);
  assert.equal(ev.convId, conv.id);
  assert.equal(JSON.parse(ev.content)._lctext, 'track me');
  assert.equal(ev.timestamp, sent.timestamp.getTime());
  assert.ok(ev.onlinePeers.includes(bob.id), `onlinePeers ${ev.onlinePeers}`);
  assert.deepEqual(ev.offlinePeers, [carol]);
});

test('_receiversOffline: its pushMessage is pushed; skip pushes nothing', async () => {
  const alice = await login(`a-${rnd()}`);
  const carol = `c-${rnd()}`; // offline
  const dave = `d-${rnd()}`; // offline
  const conv = await alice.createConversation({ members: [carol, dave], name: 'hook push' });
  await conv.send(new TextMessage('the hook pushes this'));
  const ev = (await waitCall(c => c.hook === '_receiversOffline' && c.json && c.json.convId === conv.id)).json;
  assert.deepEqual([...ev.offlinePeers].sort(), [carol, dave].sort());
  assert.equal(ev.fromPeer, alice.id);
  const req = (await waitCall(c => c.path === '/push' && c.json && c.json.convId === conv.id)).json;
  assert.deepEqual(req.payload, { alert: `hook push for ${ev.offlinePeers.join(',')}` }, 'the hook\'s pushMessage');
  assert.deepEqual([...req.to].sort(), [carol, dave].sort());

  const skipConv = await alice.createConversation({ members: [carol], name: 'skip push' });
  const skipped = (await metric('relaymesh_core_push_skipped_total'))[''];
  await skipConv.send(new TextMessage('please skip push'));
  await waitCall(c => c.hook === '_receiversOffline' && c.json && c.json.convId === skipConv.id);
  // The core counts the skip when it has decided, after the hook answered:
  // from then on no push request for this message can follow.
  await until(async () => (await metric('relaymesh_core_push_skipped_total'))[''] > skipped);
  assert.equal(calls.filter(c => c.path === '/push' && c.json && c.json.convId === skipConv.id).length, 0,
    'skip: no push request');
});

test('push precedence: the hook\'s pushMessage beats pushData, which beats the static template', async () => {
  // LeanCloud's order (REST-AND-HOOKS.md §2.3). The hooked app also has a
  // push_template (e2e/conformance_test.go).
  const alice = await login(`a-${rnd()}`);
  const carol = `c-${rnd()}`; // offline
  const conv = await alice.createConversation({ members: [carol], name: 'precedence' });
  const pushOf = async (text, options) => {
    const sent = await conv.send(new TextMessage(text), options);
    const call = await waitCall(c => c.path === '/push' && c.json && c.json.convId === conv.id &&
      c.json.timestamp === sent.timestamp.getTime());
    return call.json.payload;
  };
  const pushData = { alert: 'from pushData', badge: 'Increment' };
  assert.deepEqual(await pushOf('the hook pushes over pushData', { pushData }), { alert: `hook push for ${carol}` },
    'the hook wins over pushData');
  assert.deepEqual(await pushOf('pushData only', { pushData }), pushData, 'pushData wins over the template');
  assert.deepEqual(await pushOf('nothing given'), { alert: `template for ${conv.id}` }, 'the template comes last');
  assert.deepEqual(await pushOf('the hook pushes over the template'), { alert: `hook push for ${carol}` },
    'the hook wins over the template');
});

test('offline push: without pushData the app\'s static template is expanded', async () => {
  const alice = await login(`a-${rnd()}`, TEMPLATE_APP);
  const carol = `c-${rnd()}`;
  const conv = await alice.createConversation({ members: [carol], name: 'template' });
  const sent = await conv.send(new TextMessage('templated'));
  const req = (await waitCall(c => c.path === '/push' && c.json && c.json.convId === conv.id)).json;
  assert.equal(req.appId, TEMPLATE_APP);
  assert.deepEqual(req.payload, { alert: `${alice.id} wrote in ${conv.id}`, ts: String(sent.timestamp.getTime()) });
});

test('_conversationAdd and _conversationRemove can refuse with 4305; allowed changes go through', async () => {
  const alice = await login(`a-${rnd()}`);
  const [bob, banned, keeper] = [`b-${rnd()}`, `banned-${rnd()}`, `keep-${rnd()}`];
  const conv = await alice.createConversation({ members: [bob, keeper], name: 'membership hooks' });
  const err = await rejects(conv.add([banned]), CODE.CONVERSATION_REJECTED, 'add refused by the hook');
  assert.equal(err.appCode, 78);
  const ev = (await waitCall(c => c.hook === '_conversationAdd' && c.json && c.json.convId === conv.id)).json;
  assert.equal(ev.initBy, alice.id);
  assert.deepEqual(ev.members, [banned]);
  const err2 = await rejects(conv.remove([keeper]), CODE.CONVERSATION_REJECTED, 'remove refused by the hook');
  assert.equal(err2.appCode, 79);
  await conv.remove([bob]);
  const c2 = await alice.getConversation(conv.id, true);
  assert.deepEqual([...c2.members].sort(), [alice.id, keeper].sort(), 'only the allowed removal happened');
});

test('_conversationUpdate can refuse (4305) or replace the attributes', async () => {
  const alice = await login(`a-${rnd()}`);
  const bob = await login(`b-${rnd()}`);
  const conv = await alice.createConversation({ members: [bob.id], name: 'before' });
  conv.name = 'forbidden name';
  const err = await rejects(conv.save(), CODE.CONVERSATION_REJECTED, 'update refused by the hook');
  assert.equal(err.appCode, 80);
  conv.name = 'rename me';
  await conv.save();
  const bc = await bob.getConversation(conv.id, true);
  assert.equal(bc.name, 'renamed by the hook', 'the hook\'s attr replaced the update');
});

test('a failing _messageReceived fails open: the message is delivered unchanged', async () => {
  const alice = await login(`a-${rnd()}`);
  const bob = await login(`b-${rnd()}`);
  const conv = await alice.createConversation({ members: [bob.id], name: 'fail open' });
  const got = nextMessage(bob, conv.id);
  await conv.send(new TextMessage('the hook fails here'));
  assert.equal((await got).text, 'the hook fails here');
  assert.ok(calls.some(c => c.path === '/received' && c.json && c.json.convId === conv.id), 'the hook was called');
});

test('chatroom messages are filtered too', async () => {
  const alice = await login(`a-${rnd()}`);
  const bob = await login(`b-${rnd()}`);
  const room = await alice.createChatRoom({ name: 'filtered room' });
  const br = await bob.getConversation(room.id);
  await br.join();
  const got = nextMessage(bob, room.id);
  await room.send(new TextMessage('what a bastard'));
  assert.equal((await got).text, 'what a ***');
});

test('a word list set over the REST API replaces the configured one, and DELETE restores it', async () => {
  const base = URL.replace(/^ws/, 'http').replace(/\/$/, '');
  const api = async (method, body) => {
    const res = await fetch(`${base}/1.2/rtm/sensitive-words`, {
      method,
      headers: { 'X-LC-Id': APP, 'X-LC-Key': `${MASTER},master`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    assert.equal(res.status, 200, `${method} sensitive-words`);
    return res.json();
  };
  const alice = await login(`a-${rnd()}`);
  const bob = await login(`b-${rnd()}`);
  const group = await alice.createConversation({ members: [bob.id, `c-${rnd()}`], name: 'api words' });
  const say = async text => {
    const got = nextMessage(bob, group.id);
    await group.send(new TextMessage(text));
    return (await got).text;
  };
  assert.deepEqual(await api('GET'), { words: [], custom: false });
  assert.equal(await say('pineapple bastard'), 'pineapple ***', 'the shipped list applies first');
  await api('PUT', { words: ['pineapple'] });
  assert.deepEqual(await api('GET'), { words: ['pineapple'], custom: true });
  assert.equal(await say('pineapple bastard'), '*** bastard', 'the API list replaced the shipped one');
  await api('DELETE');
  assert.equal(await say('pineapple bastard'), 'pineapple ***', 'DELETE brings the configured list back');
});

test('every hook and push request was signed with the master key', async () => {
  // Wait until every hook call relaymesh counts has reached this server
  // (after-send hooks run after the sends' acks).
  await until(async () => {
    const made = await metric('relaymesh_hook_calls_total');
    return Object.entries(made).every(([labels, n]) => {
      const hook = (labels.match(/hook="([^"]+)"/) || [])[1];
      return [...calls, ...badSignatures].filter(c => c.hook === hook).length >= n;
    });
  });
  assert.deepEqual(badSignatures.map(c => `${c.path}: ${c.problem}`), []);
  assert.ok(calls.some(c => c.path === '/push'), 'push calls were checked');
  assert.ok(calls.some(c => c.path === '/received'), '_messageReceived calls were checked');
  assert.ok(calls.some(c => c.hook === '_conversationStart'), '_conversationStart calls were checked');
});
