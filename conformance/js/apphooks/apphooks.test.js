// Conformance for issue 8 ("A migrating app trusts it"): the hooks and REST
// calls the official SDK (leancloud-realtime 4.3.1) relies on, against a
// relaymesh dev whose config (e2e/conformance_test.go
// TestConformanceAppHooksJS) gives one app
//   - signature_required = true, so every login needs a signature,
//   - user_verify_url = <this server>/users/me, its user store, and
//   - hook_base_url = <this server>, every hook,
// and the SDK's REST calls (server option) reach relaymesh:
//   - createIMClient(user) logs in through POST /1.1/rtm/sign, the user
//     store and _rtmClientSign;
//   - _clientOnline / _clientOffline (closeCode 1 logout, 2 dropped,
//     3 tag conflict, 4 REST kick), _conversationStarted/Added/Removed and
//     _messageUpdate (4405) fire as LeanCloud's did;
//   - a client that was offline while it was invited, while members joined
//     and while the conversation changed replays those events on reconnect
//     (GET /1.1/rtm/notifications, im-client.js _syncNotifications).
//
// The server here listens on RELAYMESH_APPHOOKS_PORT:
//   GET  /users/me               the user store: X-LC-Session "token-<id>" is user <id>
//   POST /1.1/functions/<hook>   every hook
// and checks every request's X-Relaymesh-Signature (hooks/doc.go).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const axios = require('axios');
const { Realtime, TextMessage, Event } = require('leancloud-realtime');
const { rnd, sleep, once, until, rejects } = require('../lib');

const WS = process.env.RELAYMESH_APPHOOKS_URL;
const APP = process.env.RELAYMESH_APPHOOKS_APP;
const KEY = process.env.RELAYMESH_APPHOOKS_KEY;
const MASTER = process.env.RELAYMESH_APPHOOKS_MASTER;
const PORT = Number(process.env.RELAYMESH_APPHOOKS_PORT);
if (!WS || !APP || !KEY || !MASTER || !PORT) {
  throw new Error('RELAYMESH_APPHOOKS_URL/APP/KEY/MASTER/PORT not set');
}
const HOST = new URL(WS).host;
const API = `http://${HOST}`;

// The 4.3.1 SDK builds REST URLs as https://${server}/1.1/...; relaymesh
// dev serves plain HTTP (see rest.test.js).
axios.interceptors.request.use(cfg => {
  if (cfg.url && cfg.url.startsWith(`https://${HOST}/`)) cfg.url = 'http://' + cfg.url.slice('https://'.length);
  return cfg;
});

// ---- user store and hook server -------------------------------------------

const calls = []; // {path, hook, headers, json}
const badSignatures = [];
const waiters = new Set();

function verify(req, body) {
  const ts = req.headers['x-relaymesh-timestamp'];
  const sig = req.headers['x-relaymesh-signature'];
  if (!ts || !sig) return 'unsigned';
  if (Math.abs(Date.now() - Number(ts)) > 5 * 60 * 1000) return `stale timestamp ${ts}`;
  const want = crypto.createHmac('sha256', MASTER).update(ts).update('.').update(body).digest();
  const got = Buffer.from(sig, 'hex');
  if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) return 'bad signature';
  return null;
}

function answer(req, ev) {
  if (req.url === '/users/me') {
    const st = req.headers['x-lc-session'] || '';
    if (!st.startsWith('token-')) return [404, { code: 211, error: 'Could not find user.' }];
    const id = st.slice('token-'.length);
    return [200, { objectId: id, username: `user ${id}`, sessionToken: st, createdAt: '2020-01-01T00:00:00.000Z' }];
  }
  switch (req.headers['x-relaymesh-hook']) {
    case '_rtmClientSign':
      if ((ev.objectId || '').startsWith('banned-')) return [200, { result: false, error: 'banned by the conformance hook' }];
      return [200, { result: true }];
    case '_messageUpdate': {
      const text = ev.content || '';
      if (text.includes('drop me')) return [200, { drop: true, code: 43, detail: 'edit refused by the conformance hook' }];
      if (text.includes('rewrite me')) return [200, { content: JSON.stringify({ _lctype: -1, _lctext: 'rewritten by the hook' }) }];
      return [200, {}];
    }
  }
  return [200, { result: null }];
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', c => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const problem = verify(req, body);
    let json = {};
    try { json = body.length ? JSON.parse(body.toString('utf8')) : {}; } catch (e) { json = undefined; }
    const call = { path: req.url, method: req.method, hook: req.headers['x-relaymesh-hook'], headers: req.headers, json };
    if (problem) {
      badSignatures.push({ ...call, problem });
      res.writeHead(401, { 'Content-Type': 'application/json' });
      res.end('{"code":401,"error":"bad signature"}');
      return;
    }
    calls.push(call);
    for (const w of waiters) w();
    const [status, reply] = answer(req, json || {});
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(reply));
  });
});
const listening = new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(PORT, '127.0.0.1', resolve);
});

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
      reject(new Error('timed out waiting for a hook call'));
    }, ms);
    if (!check()) waiters.add(check);
  });
}
const hookCalls = (hook, pred = () => true) => calls.filter(c => c.hook === hook && c.json && pred(c.json));

// ---- SDK helpers -------------------------------------------------------------

// An AV.User as createIMClient reads it (plugin-im.js: id and
// getSessionToken); the SDK then signs the login through /1.1/rtm/sign.
const user = id => ({ id, getSessionToken: () => `token-${id}` });

const realtimes = [];
function newRealtime() {
  const rt = new Realtime({ appId: APP, appKey: KEY, server: HOST, RTMServers: WS });
  realtimes.push(rt);
  return rt;
}
const login = (id, opts) => newRealtime().createIMClient(user(id), opts);

const rest = async (method, path, body) => {
  const res = await fetch(API + path, {
    method,
    headers: { 'X-LC-Id': APP, 'X-LC-Key': `${MASTER},master`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
};

test.before(() => listening);
test.after(async () => {
  for (const rt of realtimes) {
    try { await rt._close(); } catch (e) { /* closed */ }
  }
  await new Promise(r => server.close(r));
});

// ---- tests -------------------------------------------------------------------

test('createIMClient(user) logs in with a signature from /1.1/rtm/sign', async () => {
  const id = `u-${rnd()}`;
  const client = await login(id);
  assert.equal(client.id, id, 'the client id is the user\'s objectId');
  const store = await waitCall(c => c.path === '/users/me' && c.headers['x-lc-session'] === `token-${id}`);
  assert.equal(store.method, 'GET');
  const sign = (await waitCall(c => c.hook === '_rtmClientSign' && c.json && c.json.objectId === id)).json;
  assert.equal(sign.sessionToken, `token-${id}`, '_rtmClientSign sees the user with its session token');
  assert.equal(sign.username, `user ${id}`);

  // The app requires signatures: a plain login is refused, so the one above
  // really was signed.
  await rejects(newRealtime().createIMClient(`plain-${rnd()}`), 4102, 'unsigned login');
});

test('createIMClient(user) is refused for a bad session token or by _rtmClientSign', async () => {
  const stranger = { id: `s-${rnd()}`, getSessionToken: () => 'not-a-token' };
  await rejects(newRealtime().createIMClient(stranger), 211, 'unknown session token');
  const banned = `banned-${rnd()}`;
  await rejects(login(banned), 142, 'refused by _rtmClientSign');
  assert.ok(hookCalls('_rtmClientSign', ev => ev.objectId === banned).length > 0, 'the hook was asked');
});

test('_clientOnline and _clientOffline: logout (1), a dropped connection (2) and its automatic reconnect', async () => {
  const id = `on-${rnd()}`;
  const rt = newRealtime();
  const client = await rt.createIMClient(user(id), { tag: 'web' });
  const online = (await waitCall(c => c.hook === '_clientOnline' && c.json.peerId === id)).json;
  assert.equal(online.sourceIP, '127.0.0.1');
  assert.equal(online.tag, 'web');
  assert.equal(online.reconnect, 0);

  const reconnected = once(client, Event.RECONNECT, () => true, 20000);
  (await rt._openPromise)._ws.terminate(); // the socket dies; the SDK reopens with its session token
  const dropped = (await waitCall(c => c.hook === '_clientOffline' && c.json.peerId === id)).json;
  assert.equal(dropped.closeCode, 2, 'a dropped connection');
  assert.equal(dropped.sourceIP, undefined, 'no sourceIP for a drop (LeanCloud)');
  await reconnected;
  const again = (await waitCall(c => c.hook === '_clientOnline' && c.json.peerId === id && c.json.reconnect === 1)).json;
  assert.equal(again.tag, 'web', 'the tag comes back from the session token');

  await client.close();
  const logout = (await waitCall(c => c.hook === '_clientOffline' && c.json.peerId === id && c.json.closeCode === 1)).json;
  assert.equal(logout.sourceIP, '127.0.0.1');
  assert.equal(hookCalls('_clientOnline', ev => ev.peerId === id).length, 2, 'one _clientOnline per login');
  assert.equal(hookCalls('_clientOffline', ev => ev.peerId === id).length, 2, 'one _clientOffline per session');
});

test('_clientOffline: a tag conflict (3) and a REST kick (4)', async () => {
  const id = `tag-${rnd()}`;
  const first = await login(id, { tag: 'phone' });
  const conflict = once(first, Event.CONFLICT);
  await login(id, { tag: 'phone' });
  await conflict;
  const kicked = (await waitCall(c => c.hook === '_clientOffline' && c.json.peerId === id)).json;
  assert.equal(kicked.closeCode, 3);
  assert.equal(kicked.tag, 'phone');

  const kick = await rest('POST', `/1.2/rtm/clients/${id}/kick`, { reason: 'bye now' });
  assert.equal(kick.status, 200, JSON.stringify(kick.body));
  const byApi = (await waitCall(c => c.hook === '_clientOffline' && c.json.peerId === id && c.json.closeCode === 4)).json;
  assert.equal(byApi.closeMsg, 'bye now');
  await until(() => hookCalls('_clientOnline', ev => ev.peerId === id).length === 2);
});

test('_conversationStarted, _conversationAdded and _conversationRemoved follow the changes', async () => {
  const tom = await login(`tom-${rnd()}`);
  const jerry = `jerry-${rnd()}`;
  const spike = await login(`spike-${rnd()}`);
  const conv = await tom.createConversation({ members: [jerry], name: 'notified' });
  await waitCall(c => c.hook === '_conversationStarted' && c.json.convId === conv.id);
  assert.equal(hookCalls('_conversationAdded', ev => ev.convId === conv.id).length, 0, 'not for the initial members');

  await conv.add([spike.id]);
  const added = (await waitCall(c => c.hook === '_conversationAdded' && c.json.convId === conv.id)).json;
  assert.deepEqual(added, { initBy: tom.id, convId: conv.id, members: [spike.id] });

  await conv.remove([jerry]);
  const kicked = (await waitCall(c => c.hook === '_conversationRemoved' && c.json.convId === conv.id)).json;
  assert.deepEqual(kicked, { initBy: tom.id, convId: conv.id, members: [jerry] });

  await (await spike.getConversation(conv.id)).quit();
  const quit = (await waitCall(c => c.hook === '_conversationRemoved' && c.json.convId === conv.id && c.json.initBy === spike.id)).json;
  assert.deepEqual(quit.members, [spike.id], 'a quit fires _conversationRemoved too (not _conversationRemove)');
});

test('_messageUpdate: a drop refuses the edit with 4405; a rewrite replaces it; recalls are hooked', async () => {
  const tom = await login(`tom-${rnd()}`);
  const jerry = await login(`jerry-${rnd()}`);
  const conv = await tom.createConversation({ members: [jerry.id], name: 'edits' });
  const msg = await conv.send(new TextMessage('original'));

  const err = await assert.rejects(conv.update(msg, new TextMessage('please drop me')), e => {
    assert.equal(e.code, 4405, `got ${e.code} ${e.message}`);
    assert.equal(e.appCode, 43, 'the hook code travels as appCode');
    return true;
  });
  void err;
  const ev = (await waitCall(c => c.hook === '_messageUpdate' && c.json.msgId === msg.id)).json;
  assert.equal(ev.fromPeer, tom.id);
  assert.equal(ev.convId, conv.id);
  assert.deepEqual(ev.toPeers, [jerry.id]);
  assert.equal(ev.timestamp, msg.timestamp.getTime());
  assert.equal(ev.recall, false);
  const jc = await jerry.getConversation(conv.id);
  assert.deepEqual((await jc.queryMessages({ limit: 10 })).map(m => m.text), ['original'], 'the dropped edit changed nothing');

  const updated = once(jerry, Event.MESSAGE_UPDATE, m => m.id === msg.id);
  await conv.update(msg, new TextMessage('please rewrite me'));
  const [got] = await updated;
  assert.equal(got.text, 'rewritten by the hook');
  assert.deepEqual((await jc.queryMessages({ limit: 10 })).map(m => m.text), ['rewritten by the hook']);

  const recalled = once(jerry, Event.MESSAGE_RECALL, m => m.id === msg.id);
  await conv.recall(msg);
  await recalled;
  const rc = (await waitCall(c => c.hook === '_messageUpdate' && c.json.msgId === msg.id && c.json.recall === true)).json;
  assert.equal(rc.content, '');
});

test('a client offline while invited, joined by others and updated replays those events on reconnect', async () => {
  const tom = await login(`tom-${rnd()}`);
  const spike = `spike-${rnd()}`;
  const jerryId = `jerry-${rnd()}`;
  const jerryRt = newRealtime();
  const jerry = await jerryRt.createIMClient(user(jerryId));
  // Listen before creating: the push to jerry and the answer to tom come
  // on two connections, and the push may well arrive first. jerry is new,
  // so its first invitation is this one.
  const firstInvite = once(jerry, Event.INVITED);
  const known = await tom.createConversation({ members: [jerryId], name: 'known' });
  const [[fp, fc]] = [await firstInvite];
  assert.equal(fc.id, known.id);
  assert.equal(fp.invitedBy, tom.id);

  const invited = [];
  const joined = [];
  const updated = [];
  jerry.on(Event.INVITED, (p, c) => invited.push([p, c.id]));
  jerry.on(Event.MEMBERS_JOINED, (p, c) => joined.push([p, c.id]));
  jerry.on(Event.CONVERSATION_INFO_UPDATED, (p, c) => updated.push([p, c.id]));

  jerryRt.pause(); // the network goes away
  await waitCall(c => c.hook === '_clientOffline' && c.json.peerId === jerryId);

  await known.add([spike]);
  known.set('name', 'renamed while jerry was away');
  await known.save();
  const later = await tom.createConversation({ members: [jerryId], name: 'created while jerry was away' });
  // Stored for jerry (positive control before jerry asks): the master key
  // may read any client's log.
  await until(async () => {
    const r = await fetch(`${API}/1.1/rtm/notifications?client_id=${jerryId}&start_ts=0&notification_type=permanent`,
      { headers: { 'X-LC-Id': APP, 'X-LC-Key': `${MASTER},master` } });
    const b = await r.json();
    return b.notifications && b.notifications.some(n => n.cid === later.id);
  });
  assert.equal(invited.length + joined.length + updated.length, 0, 'nothing reached jerry while offline');

  const back = once(jerry, Event.RECONNECT, () => true, 20000);
  jerryRt.resume();
  await back;
  await until(() => invited.length >= 1 && joined.length >= 1 && updated.length >= 1, 10000);
  assert.deepEqual(invited.map(([p, cid]) => [p.invitedBy, cid]), [[tom.id, later.id]]);
  assert.deepEqual(joined.map(([p, cid]) => [p.invitedBy, p.members, cid]), [[tom.id, [spike], known.id]]);
  assert.equal(updated[0][1], known.id);
  assert.equal(updated[0][0].updatedBy, tom.id);
  assert.equal(updated[0][0].attributes.name, 'renamed while jerry was away');
  assert.equal((await jerry.getConversation(known.id)).name, 'renamed while jerry was away');

  // No repeats: a live change made after the replay arrives, and by then
  // the replayed events are still there once each.
  known.set('name', 'renamed once jerry was back');
  await known.save();
  await until(() => updated.length >= 2, 10000);
  assert.equal(updated[1][0].attributes.name, 'renamed once jerry was back', 'the live change');
  assert.equal(invited.length, 1, 'the invitation was replayed once');
  assert.equal(joined.length, 1, 'the join was replayed once');
  assert.equal(updated.length, 2, 'the rename was replayed once, then the live one');
});

test('every user-store and hook request was signed with the master key', async () => {
  await sleep(200);
  assert.deepEqual(badSignatures.map(c => `${c.path}: ${c.problem}`), []);
  assert.ok(calls.some(c => c.path === '/users/me'));
  assert.ok(calls.some(c => c.hook === '_clientOffline'));
});
