// Conformance for system (service) conversations (issue 4) through the
// official leancloud-realtime 4.3.1 SDK against a running relaymesh
// (RELAYMESH_URL=ws://ADDR/; the server API is http://ADDR/1.2/): a service
// conversation created over REST, found and subscribed with the SDK,
// broadcasts reaching the subscribers, and global broadcasts (issue 8)
// reaching every user.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Realtime, Event, TextMessage } = require('leancloud-realtime');
const { rnd, sleep, until, collect } = require('./lib');

const WS = process.env.RELAYMESH_URL;
if (!WS) throw new Error('RELAYMESH_URL is not set');
const API = `http://${new URL(WS).host}`;

test.describe('system conversations', () => {
  const appId = `sys-${rnd()}`;
  const clients = [];
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

  test('subscribe, then a broadcast arrives', async () => {
    const created = await rest('POST', '/1.2/rtm/service-conversations', { name: 'news' });
    assert.equal(created.status, 200);
    assert.equal(created.body.sys, true);
    const id = created.body.objectId;

    const rt = new Realtime({ appId, appKey: 'anykey', RTMServers: WS });
    const tom = await rt.createIMClient(`tom-${rnd()}`);
    clients.push(tom);
    const [conv] = await tom.getServiceConversationQuery().equalTo('objectId', id).find();
    assert.ok(conv, 'the service conversation is found');
    assert.equal(conv.system, true);
    await conv.subscribe();
    const count = await rest('GET', `/1.2/rtm/service-conversations/${id}/subscribers/count`);
    assert.equal(count.body.count, 1);

    const got = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no broadcast in 10 s')), 10000);
      tom.on(Event.MESSAGE, (msg, c) => {
        if (c.id !== id) return;
        clearTimeout(timer);
        resolve(msg);
      });
    });
    const sent = await rest('POST', `/1.2/rtm/service-conversations/${id}/broadcasts`, { from_client: 'sys', message: 'hello' });
    assert.equal(sent.status, 200);
    const msg = await got;
    assert.equal(msg.id, sent.body['msg-id']);
    assert.equal(msg.content, 'hello');

    await conv.unsubscribe();
    const after = await rest('GET', `/1.2/rtm/service-conversations/${id}/subscribers/count`);
    assert.equal(after.body.count, 0);
    const late = collect(tom, Event.MESSAGE);
    const gone = await rest('POST', `/1.2/rtm/service-conversations/${id}/broadcasts`, { from_client: 'sys', message: 'gone' });
    assert.equal(gone.status, 200);
    // A message to tom alone, sent after the broadcast, is the positive
    // control: once it is here, the broadcast would have been too.
    const marker = await rest('POST', `/1.2/rtm/service-conversations/${id}/messages`,
      { from_client: 'sys', to_clients: [tom.id], message: 'marker' });
    await until(() => late.some(([m]) => m.id === marker.body['msg-id']));
    assert.deepEqual(late.map(([m]) => m.id), [marker.body['msg-id']], 'no broadcast after unsubscribing, only the marker');
  });

  const login = async (id, opts = {}) => {
    const got = [];
    const rt = new Realtime({
      appId, appKey: 'anykey', RTMServers: WS, ...opts,
      plugins: [{ name: 'spy', onIMClientCreate: c => c.on(Event.MESSAGE, (m, conv) => got.push({ m, conv })) }],
    });
    const c = await rt.createIMClient(id);
    clients.push(c);
    return { c, got };
  };

  test('what a subscriber sends is kept for the server, never delivered to the others', async () => {
    const id = (await rest('POST', '/1.2/rtm/service-conversations', { name: 'feedback' })).body.objectId;
    const [a, b] = await Promise.all([login(`a-${rnd()}`), login(`b-${rnd()}`)]);
    const [ca, cb] = await Promise.all([a.c.getConversation(id), b.c.getConversation(id)]);
    await Promise.all([ca.subscribe(), cb.subscribe()]);
    const sent = await ca.send(new TextMessage('the app crashed'));
    assert.ok(sent.id, 'the send is acked');
    const stored = await rest('GET', `/1.2/rtm/service-conversations/${id}/messages`);
    assert.equal(stored.status, 200);
    assert.deepEqual(stored.body.map(r => [r['msg-id'], r.from]), [[sent.id, a.c.id]], 'queryable over REST');
    const marker = (await rest('POST', `/1.2/rtm/service-conversations/${id}/messages`,
      { from_client: 'sys', to_clients: [b.c.id], message: 'marker' })).body['msg-id'];
    await until(() => b.got.some(x => x.m.id === marker));
    assert.deepEqual(b.got.filter(x => x.conv.id === id).map(x => x.m.id), [marker],
      'the other subscriber got only the marker sent after it');
  });

  test('offline subscribers get unexpired broadcasts on login', async () => {
    const id = (await rest('POST', '/1.2/rtm/service-conversations', { name: 'alerts' })).body.objectId;
    const tomId = `tom-${rnd()}`;
    const tom = await login(tomId);
    await (await tom.c.getConversation(id)).subscribe();
    await tom.c.close();
    const bcast = async (message, validTill) => (await rest('POST', `/1.2/rtm/service-conversations/${id}/broadcasts`,
      { from_client: 'sys', message, ...(validTill ? { valid_till: validTill } : {}) })).body['msg-id'];
    const short = await bcast('expires soon', Date.now() + 1000);
    const kept = await bcast('still valid');
    await sleep(1500); // the first one expires

    const back = await login(tomId);
    await until(() => back.got.some(x => x.m.id === kept));
    const marker = (await rest('POST', `/1.2/rtm/service-conversations/${id}/messages`,
      { from_client: 'sys', to_clients: [tomId], message: 'marker' })).body['msg-id'];
    await until(() => back.got.some(x => x.m.id === marker));
    assert.deepEqual(back.got.filter(x => x.conv.id === id).map(x => x.m.id), [kept, marker],
      'the unexpired broadcast, not the expired one, then the marker');
    assert.ok(!back.got.some(x => x.m.id === short));
  });

  test('a global broadcast reaches every user: online non-subscribers now, a first login the latest', async () => {
    const id = (await rest('POST', '/1.2/rtm/service-conversations', { name: 'everyone' })).body.objectId;
    const online = await login(`online-${rnd()}`); // never subscribes
    const global = async message => {
      const res = await rest('POST', '/1.2/rtm/broadcasts', { conv_id: id, from_client: 'sys', message });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body['msg-id'];
    };
    const older = await global('older');
    const latest = await global('latest');
    await until(() => online.got.some(x => x.m.id === latest));
    assert.deepEqual(online.got.filter(x => x.conv.id === id).map(x => x.m.id), [older, latest],
      'an online non-subscriber gets both, live');
    assert.equal(online.got.find(x => x.m.id === latest).m.from, 'sys');

    const newcomer = await login(`new-${rnd()}`); // never logged in before
    await until(() => newcomer.got.some(x => x.m.id === latest));
    const marker = (await rest('POST', `/1.2/rtm/service-conversations/${id}/messages`,
      { from_client: 'sys', to_clients: [newcomer.c.id], message: 'marker' })).body['msg-id'];
    await until(() => newcomer.got.some(x => x.m.id === marker));
    assert.deepEqual(newcomer.got.filter(x => x.conv.id === id).map(x => x.m.id), [latest, marker],
      'a first login gets only the latest unexpired global broadcast');
  });

  test('a message to one user, sent while offline, arrives on login', async () => {
    const created = await rest('POST', '/1.2/rtm/service-conversations', { name: 'inbox' });
    const id = created.body.objectId;
    const jerryId = `jerry-${rnd()}`;
    const sent = await rest('POST', `/1.2/rtm/service-conversations/${id}/messages`,
      { from_client: 'svc', to_clients: [jerryId], message: 'while you were away' });
    assert.equal(sent.status, 200);
    const listed = await rest('GET', `/1.2/rtm/service-conversations/${id}/subscribers/${jerryId}/messages`);
    assert.deepEqual(listed.body.map(r => r['msg-id']), [sent.body['msg-id']]);

    const got = [];
    const rt = new Realtime({
      appId, appKey: 'anykey', RTMServers: WS,
      plugins: [{ name: 'spy', onIMClientCreate: c => c.on(Event.MESSAGE, (m, conv) => got.push({ m, conv })) }],
    });
    clients.push(await rt.createIMClient(jerryId));
    const hit = await until(() => got.find(x => x.m.id === sent.body['msg-id']));
    assert.equal(hit.conv.id, id);
    assert.equal(hit.m.content, 'while you were away');
    assert.equal(hit.m.from, 'svc');
  });
});
