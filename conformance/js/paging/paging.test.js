// History paging (issue 8, "History paging loses messages") through the
// official leancloud-realtime 4.3.1 SDK and the REST API against a relaymesh
// dev started without send or history rate limits
// (RELAYMESH_PAGING_URL=ws://ADDR/).
//
// Three members send 45 messages in concurrent bursts, so many are sent in
// the same millisecond. Then every page size from 1 to 30 pages through the
// whole history both ways: with the SDK's createMessagesIterator (newest
// first, cursor = the first message of the last page), with queryMessages
// going forward (direction OLD_TO_NEW, cursor = the last
// message), and over REST (msgid + timestamp, reversed or not). Each must
// return every message exactly once, in order.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Realtime, TextMessage, MessageQueryDirection } = require('leancloud-realtime');
const { rnd } = require('../lib');

const WS = process.env.RELAYMESH_PAGING_URL;
if (!WS) throw new Error('RELAYMESH_PAGING_URL is not set');
const API = `http://${new URL(WS).host}`;
const TOTAL = 45;

test.describe('history paging', () => {
  const appId = `paging-${rnd()}`;
  const clients = [];
  let conv; // Tom's view of the conversation
  let sentIDs = []; // every acked id, in (timestamp, id) order

  test.before(async () => {
    const login = async id => {
      const c = await new Realtime({ appId, appKey: 'k', RTMServers: WS }).createIMClient(id);
      clients.push(c);
      return c;
    };
    const [tom, jerry, spike] = await Promise.all(['tom', 'jerry', 'spike'].map(n => login(`${n}-${rnd()}`)));
    conv = await tom.createConversation({ members: [jerry.id, spike.id], name: 'paging' });
    const convs = [conv, await jerry.getConversation(conv.id), await spike.getConversation(conv.id)];
    const sent = [];
    // Bursts of 9: three per sender at once.
    for (let burst = 0; sent.length < TOTAL; burst++) {
      const batch = [];
      for (let k = 0; k < 9 && sent.length + batch.length < TOTAL; k++) {
        batch.push(convs[k % 3].send(new TextMessage(`b${burst}-${k}`)));
      }
      sent.push(...(await Promise.all(batch)));
    }
    assert.equal(sent.length, TOTAL);
    sent.sort((a, b) => a.timestamp - b.timestamp || (a.id < b.id ? -1 : 1));
    sentIDs = sent.map(m => m.id);
    assert.equal(new Set(sentIDs).size, TOTAL, 'acked ids are unique');
  });

  test.after(async () => {
    await Promise.all(clients.map(c => c.close().catch(() => {})));
  });

  const assertAll = (got, what) => {
    const ids = got.map(m => m.id);
    assert.equal(ids.length, TOTAL, `${what}: got ${ids.length} messages, want ${TOTAL}`);
    assert.equal(new Set(ids).size, TOTAL, `${what}: duplicates`);
    assert.deepEqual(new Set(ids), new Set(sentIDs), `${what}: not the messages sent`);
    for (let i = 1; i < got.length; i++) {
      assert.ok(+got[i - 1].timestamp <= +got[i].timestamp, `${what}: out of order at ${i}`);
    }
  };

  test('createMessagesIterator returns every message for every page size 1..30', async () => {
    for (let limit = 1; limit <= 30; limit++) {
      const it = conv.createMessagesIterator({ limit });
      let all = [];
      for (let pages = 0; ; pages++) {
        assert.ok(pages <= TOTAL + 1, `limit ${limit}: the iterator never ends`);
        const { value, done } = await it.next();
        assert.ok(value.length <= limit, `limit ${limit}: page of ${value.length}`);
        // Pages come newest first; each page is ascending.
        all = value.concat(all);
        if (done) break;
      }
      assertAll(all, `iterator limit ${limit}`);
    }
  });

  test('queryMessages pages old to new for every page size 1..30', async () => {
    for (let limit = 1; limit <= 30; limit++) {
      let all = [];
      let page = await conv.queryMessages({ limit, direction: MessageQueryDirection.OLD_TO_NEW, startTime: new Date(1) });
      for (let pages = 0; ; pages++) {
        assert.ok(pages <= TOTAL + 1, `limit ${limit}: paging never ends`);
        all = all.concat(page);
        if (page.length < limit) break;
        const last = page[page.length - 1];
        page = await conv.queryMessages({
          limit, direction: MessageQueryDirection.OLD_TO_NEW, startTime: last.timestamp, startMessageId: last.id,
        });
      }
      assertAll(all, `forward limit ${limit}`);
    }
  });

  test('queryMessages with closed ends includes the bounding messages', async () => {
    const [a, b] = [sentIDs[5], sentIDs[25]];
    const hist = await conv.queryMessages({ limit: 100 });
    const byID = Object.fromEntries(hist.map(m => [m.id, m]));
    const open = await conv.queryMessages({
      startTime: byID[b].timestamp, startMessageId: b, endTime: byID[a].timestamp, endMessageId: a, limit: 100,
    });
    assert.deepEqual(open.map(m => m.id), sentIDs.slice(6, 25), 'open interval');
    const closed = await conv.queryMessages({
      startTime: byID[b].timestamp, startMessageId: b, startClosed: true,
      endTime: byID[a].timestamp, endMessageId: a, endClosed: true, limit: 100,
    });
    assert.deepEqual(closed.map(m => m.id), sentIDs.slice(5, 26), 'closed interval');
  });

  test('REST history pages both ways for every page size 1..30', async () => {
    const get = async params => {
      const res = await fetch(`${API}/1.2/rtm/conversations/${conv.id}/messages?${new URLSearchParams(params)}`, {
        headers: { 'X-LC-Id': appId, 'X-LC-Key': 'master,master' },
      });
      assert.equal(res.status, 200, `GET messages ${JSON.stringify(params)}`);
      return res.json();
    };
    for (const reversed of [false, true]) {
      for (let limit = 1; limit <= 30; limit++) {
        const rows = [];
        let params = { limit, reversed };
        for (let pages = 0; ; pages++) {
          assert.ok(pages <= TOTAL + 1, `REST limit ${limit}: paging never ends`);
          const page = await get(params);
          rows.push(...page);
          if (page.length < limit) break;
          const last = page[page.length - 1];
          params = { limit, reversed, msgid: last['msg-id'], timestamp: last.timestamp };
        }
        const got = reversed ? rows : rows.slice().reverse(); // oldest first
        assertAll(got.map(r => ({ id: r['msg-id'], timestamp: r.timestamp })), `REST reversed=${reversed} limit ${limit}`);
      }
    }
  });
});
