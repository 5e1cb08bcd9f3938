// The relaymesh chat demo (served by `relaymesh dev` at /demo): the official
// LeanCloud realtime SDK 4.3.1, unchanged, whose WebSocket slot (the module
// `ws`, aliased at bundle time by sdk/js/scripts/build-demo.mjs) is
// @relaymesh/realtime-transport. Built into web/static/demo.js by `make js`.
//
// Everything the page does is also on window.relaymeshDemo, which the
// browser test (e2e/browser_test.go) drives.

import { Realtime, TextMessage, Event } from 'leancloud-realtime';
import { configure, state as transportState, onTransport, chooseEdge } from '@relaymesh/realtime-transport';

const APP_ID = 'relaymesh-demo';
const $ = sel => document.querySelector(sel);

const demo = {
  sdk: { Realtime, TextMessage, Event }, // for the console (and the tests)
  client: null,
  realtime: null,
  convs: new Map(), // id -> Conversation
  messages: new Map(), // conv id -> [Message]
  current: null, // open conversation id
  events: [], // everything that happened, for the test and the log pane
  edges: null, // chooseEdge's answer
  typingUntil: new Map(), // conv id -> {from, until}
};
window.relaymeshDemo = demo;

function note(type, fields = {}) {
  const e = { type, at: Date.now(), ...fields };
  demo.events.push(e);
  const li = document.createElement('li');
  li.textContent = new Date(e.at).toISOString().slice(11, 23) + ' ' + type + ' ' + JSON.stringify(fields);
  $('#log').prepend(li);
  return e;
}

function text(m) {
  if (m instanceof TextMessage || typeof m.text === 'string') return m.text;
  if (typeof m.content === 'string') return m.content;
  return JSON.stringify(m.content);
}

function showTransport() {
  const s = transportState;
  $('#transport').textContent = s.transport && demo.client
    ? s.transport + (s.fallbackReason ? ' (' + s.fallbackReason + ')' : '') + ` · datagrams in ${s.datagramsIn} out ${s.datagramsOut}`
    : 'not connected';
  $('#transport').className = (demo.client && s.transport) || '';
}
onTransport(s => {
  note('transport', { transport: s.transport, fallbackReason: s.fallbackReason });
  showTransport();
});

function track(conv) {
  if (demo.convs.has(conv.id)) return conv;
  demo.convs.set(conv.id, conv);
  conv.on(Event.LAST_DELIVERED_AT_UPDATE, () => {
    note('delivered', { conv: conv.id, at: conv.lastDeliveredAt && conv.lastDeliveredAt.getTime() });
    render();
  });
  conv.on(Event.LAST_READ_AT_UPDATE, () => {
    note('read', { conv: conv.id, at: conv.lastReadAt && conv.lastReadAt.getTime() });
    render();
  });
  return conv;
}

function isTyping(m) {
  const a = typeof m.getAttributes === 'function' ? m.getAttributes() : m.attributes;
  return !!(a && a.typing);
}

function addMessage(convId, m) {
  const list = demo.messages.get(convId) || [];
  if (!list.some(x => x.id === m.id)) list.push(m);
  demo.messages.set(convId, list);
}

demo.login = async function login(clientId, { mode = 'auto', connectTimeoutMs = 5000 } = {}) {
  if (demo.client) await demo.logout();
  configure({ mode, connectTimeoutMs });
  demo.edges = await chooseEdge({ routers: [location.origin], appId: APP_ID });
  note('edges', { servers: demo.edges.servers, rtts: demo.edges.rtts });
  demo.realtime = new Realtime({ appId: APP_ID, appKey: 'demo', RTMServers: demo.edges.servers, noBinary: false });
  const client = await demo.realtime.createIMClient(clientId);
  demo.client = client;
  client.on(Event.MESSAGE, (m, conv) => {
    track(conv);
    // A typing indicator: a transient TextMessage with {typing: true} in
    // its attributes (SDK 4.3.1 does not mark received messages transient).
    if (isTyping(m)) {
      demo.typingUntil.set(conv.id, { from: m.from, until: Date.now() + 3000 });
      note('typing', { conv: conv.id, from: m.from, datagramsIn: transportState.datagramsIn });
      render();
      return;
    }
    addMessage(conv.id, m);
    note('message', { conv: conv.id, id: m.id, from: m.from, text: text(m), timestamp: m.timestamp && m.timestamp.getTime() });
    if (conv.id === demo.current) conv.read().catch(() => {});
    render();
  });
  client.on(Event.MESSAGE_RECALL, (m, conv) => {
    note('recalled', { conv: conv.id, id: m.id, from: m.from });
    const list = demo.messages.get(conv.id) || [];
    const i = list.findIndex(x => x.id === m.id);
    if (i >= 0) list[i] = m;
    render();
  });
  client.on(Event.DISCONNECT, () => note('disconnect'));
  client.on(Event.RECONNECT, () => note('reconnect'));
  note('login', { clientId, transport: transportState.transport, fallbackReason: transportState.fallbackReason });
  $('#who').textContent = clientId;
  await demo.conversations();
  return demo.transport();
};

demo.logout = async function logout() {
  if (!demo.client) return;
  const c = demo.client;
  demo.client = null;
  demo.convs.clear();
  demo.messages.clear();
  demo.current = null;
  await c.close();
  note('logout');
  render();
};

demo.transport = () => ({ ...transportState });

demo.conversations = async function conversations() {
  const list = await demo.client.getQuery().containsMembers([demo.client.id]).find();
  for (const c of list) track(c);
  render();
  return list.map(c => ({ id: c.id, name: c.name, members: c.members }));
};

demo.createChat = async function createChat(members, name) {
  const conv = track(await demo.client.createConversation({ members, name: name || members.join(', '), unique: true }));
  await demo.open(conv.id);
  return conv.id;
};

async function getConv(id) {
  if (demo.convs.has(id)) return demo.convs.get(id);
  return track(await demo.client.getConversation(id));
}

demo.open = async function open(id) {
  const conv = await getConv(id);
  demo.current = id;
  const history = await conv.queryMessages({ limit: 50 });
  for (const m of history) addMessage(id, m);
  await conv.read().catch(() => {});
  render();
  return id;
};

demo.send = async function send(id, body) {
  const conv = await getConv(id);
  const m = await conv.send(new TextMessage(body), { receipt: true });
  addMessage(id, m);
  note('sent', { conv: id, id: m.id, text: body, timestamp: m.timestamp.getTime() });
  render();
  return { id: m.id, timestamp: m.timestamp.getTime() };
};

demo.typing = async function typing(id) {
  const conv = await getConv(id);
  const before = transportState.datagramsOut;
  await conv.send(new TextMessage('').setAttributes({ typing: true }), { transient: true });
  return { asDatagram: transportState.datagramsOut > before };
};

demo.recall = async function recall(id, messageId) {
  const conv = await getConv(id);
  const m = (demo.messages.get(id) || []).find(x => x.id === messageId);
  if (!m) throw new Error('no message ' + messageId + ' in ' + id);
  const r = await conv.recall(m);
  const list = demo.messages.get(id);
  list[list.indexOf(m)] = r;
  note('recall', { conv: id, id: messageId });
  render();
  return true;
};

demo.joinChatroom = async function joinChatroom(nameOrId) {
  let room;
  try {
    room = await demo.client.getConversation(nameOrId);
  } catch {
    room = null;
  }
  if (!room) {
    const found = await demo.client.getChatRoomQuery().equalTo('name', nameOrId).find();
    room = found[0] || (await demo.client.createChatRoom({ name: nameOrId }));
  }
  track(room);
  await room.join();
  note('joined', { conv: room.id, name: room.name });
  await demo.open(room.id);
  return room.id;
};

// ---- the page ----

function el(tag, props = {}, ...kids) {
  const e = Object.assign(document.createElement(tag), props);
  for (const k of kids) e.append(k);
  return e;
}

function render() {
  showTransport();
  const ul = $('#convs');
  ul.replaceChildren();
  for (const c of demo.convs.values()) {
    const li = el('li', { className: c.id === demo.current ? 'current' : '' }, el('a', { href: '#', textContent: (c.transient ? '# ' : '') + (c.name || c.id) }));
    li.onclick = ev => {
      ev.preventDefault();
      demo.open(c.id).catch(showError);
    };
    ul.append(li);
  }
  const box = $('#messages');
  box.replaceChildren();
  const conv = demo.convs.get(demo.current);
  $('#title').textContent = conv ? (conv.name || conv.id) + ' · ' + (conv.members || []).join(', ') : 'no conversation open';
  if (!conv) return;
  for (const m of demo.messages.get(conv.id) || []) {
    const mine = demo.client && m.from === demo.client.id;
    let status = '';
    if (mine && conv.lastReadAt && m.timestamp <= conv.lastReadAt) status = ' ✓✓ read';
    else if (mine && conv.lastDeliveredAt && m.timestamp <= conv.lastDeliveredAt) status = ' ✓ delivered';
    const recalled = m.type === -127; // RecalledMessage
    box.append(el('div', { className: 'msg' + (mine ? ' mine' : '') }, el('b', { textContent: m.from + ': ' }), el('span', { textContent: recalled ? '(recalled)' : text(m) }), el('small', { textContent: status })));
  }
  const t = demo.typingUntil.get(conv.id);
  $('#typing').textContent = t && t.until > Date.now() ? t.from + ' is typing…' : '';
}
setInterval(render, 1000);

function showError(err) {
  note('error', { message: String(err && err.message || err) });
  $('#error').textContent = String(err && err.message || err);
}

function wire() {
  $('#login').onsubmit = ev => {
    ev.preventDefault();
    const mode = $('#forcews').checked ? 'websocket' : 'auto';
    demo.login($('#clientId').value.trim(), { mode }).catch(showError);
  };
  $('#chat').onsubmit = ev => {
    ev.preventDefault();
    const members = $('#members').value.split(',').map(s => s.trim()).filter(Boolean);
    demo.createChat(members).catch(showError);
  };
  $('#room').onsubmit = ev => {
    ev.preventDefault();
    demo.joinChatroom($('#roomName').value.trim()).catch(showError);
  };
  $('#compose').onsubmit = ev => {
    ev.preventDefault();
    const v = $('#text').value;
    if (!demo.current || !v) return;
    $('#text').value = '';
    demo.send(demo.current, v).catch(showError);
  };
  let lastTyping = 0;
  $('#text').oninput = () => {
    if (!demo.current || Date.now() - lastTyping < 2000) return;
    lastTyping = Date.now();
    demo.typing(demo.current).catch(showError);
  };
  $('#logout').onclick = () => demo.logout().catch(showError);
  render();
  // /demo/?clientId=alice[&ws=1][&chat=bob] logs in (and opens a chat) at once.
  const q = new URLSearchParams(location.search);
  if (q.get('clientId')) {
    $('#clientId').value = q.get('clientId');
    $('#forcews').checked = q.get('ws') === '1';
    demo
      .login(q.get('clientId'), { mode: q.get('ws') === '1' ? 'websocket' : 'auto' })
      .then(() => q.get('chat') && demo.createChat(q.get('chat').split(',')))
      .catch(showError);
  }
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', wire);
else wire();
