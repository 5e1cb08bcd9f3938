// Conformance for the REST API (issue 4, "Server REST API") through the
// official leancloud-realtime 4.3.1 SDK against a running relaymesh
// (RELAYMESH_URL=ws://ADDR/; the REST API is http://ADDR/1.1/ and /1.2/):
// the SDK's own REST call for member roles (getAllMemberInfo), and
// messages sent over the server API reaching SDK clients.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const axios = require('axios');
const { Realtime, TextMessage, Event, ConversationMemberRole } = require('leancloud-realtime');
const { rnd, once } = require('./lib');

const WS = process.env.RELAYMESH_URL;
if (!WS) throw new Error('RELAYMESH_URL is not set');
const HOST = new URL(WS).host;
const API = `http://${HOST}`;

// The 4.3.1 SDK builds REST URLs as `https://${server}/1.1/...`
// (src/realtime.js _request); relaymesh dev serves plain HTTP, so rewrite
// the scheme of the SDK's requests to this host. In production a TLS
// terminator in front of the edges serves https://server/ as is.
axios.interceptors.request.use(cfg => {
  if (cfg.url && cfg.url.startsWith(`https://${HOST}/`)) cfg.url = 'http://' + cfg.url.slice('https://'.length);
  return cfg;
});

test.describe('REST API', () => {
  const appId = `rest-${rnd()}`;
  const clients = [];
  // `server` makes the SDK send its REST calls to relaymesh; RTMServers
  // skips the router.
  const login = async id => {
    const rt = new Realtime({ appId, appKey: 'anykey', server: HOST, RTMServers: WS });
    const c = await rt.createIMClient(id);
    clients.push(c);
    return c;
  };
  // rest calls the server API with the master key (relaymesh dev: any key).
  const rest = async (method, path, body) => {
    const res = await fetch(API + path, {
      method,
      headers: { 'X-LC-Id': appId, 'X-LC-Key': 'anymaster,master', 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  };

  test.after(async () => {
    await Promise.all(clients.map(c => c.close().catch(() => {})));
  });

  test('getAllMemberInfo reads roles through /1.1/classes/_ConversationMemberInfo', async () => {
    const [tom, jerry, spike] = await Promise.all(['tom', 'jerry', 'spike'].map(n => login(`${n}-${rnd()}`)));
    const conv = await tom.createConversation({ members: [jerry.id, spike.id], name: 'roles' });
    await conv.updateMemberRole(jerry.id, ConversationMemberRole.MANAGER);

    const seen = await spike.getConversation(conv.id);
    const infos = await seen.getAllMemberInfo({ noCache: true });
    const roles = Object.fromEntries(infos.map(i => [i.memberId, i.role]));
    assert.deepEqual(roles, {
      [tom.id]: ConversationMemberRole.OWNER,
      [jerry.id]: ConversationMemberRole.MANAGER,
      [spike.id]: ConversationMemberRole.MEMBER,
    });
    assert.equal((await seen.getMemberInfo(jerry.id)).role, ConversationMemberRole.MANAGER);
    assert.equal((await seen.getMemberInfo(tom.id)).isOwner, true);
  });

  test('a message sent over REST reaches SDK clients', async () => {
    const [tom, jerry] = await Promise.all(['tom', 'jerry'].map(n => login(`${n}-${rnd()}`)));
    const created = await rest('POST', '/1.2/rtm/conversations', { name: 'from rest', m: [tom.id, jerry.id] });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const cid = created.body.objectId;

    const got = once(jerry, Event.MESSAGE, (m, c) => c.id === cid);
    // A typed text message, as the SDKs encode it (REST-AND-HOOKS.md §1.2).
    const message = JSON.stringify({ _lctype: -1, _lctext: 'hello from the server' });
    const sent = await rest('POST', `/1.2/rtm/conversations/${cid}/messages`, { from_client: 'announcer', message });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    const [msg] = await got;
    assert.ok(msg instanceof TextMessage, `got ${msg.constructor.name}`);
    assert.equal(msg.text, 'hello from the server');
    assert.equal(msg.from, 'announcer');
    assert.equal(msg.id, sent.body['msg-id']);
    assert.equal(msg.timestamp.getTime(), sent.body.timestamp);

    // The SDK's history and the REST history agree.
    const conv = await tom.getConversation(cid);
    const [viaSDK] = await conv.queryMessages({ limit: 1 });
    const viaREST = await rest('GET', `/1.2/rtm/conversations/${cid}/messages?limit=1`);
    assert.equal(viaREST.status, 200);
    assert.equal(viaREST.body[0]['msg-id'], viaSDK.id);
    assert.equal(viaREST.body[0].timestamp, viaSDK.timestamp.getTime());
  });

  test('a REST kick closes the session with 4115', async () => {
    const tom = await login(`tom-${rnd()}`);
    const closed = once(tom, Event.CLOSE);
    const res = await rest('POST', `/1.2/rtm/clients/${tom.id}/kick`, { reason: 'bye' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const [ev] = await closed;
    assert.equal(ev.code, 4115);
    assert.equal(ev.reason, 'bye', 'the reason given to the API reaches the client');
  });
});
