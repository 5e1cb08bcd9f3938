// Nearest-edge choice: ask each candidate's /v1/route, time a few small
// requests to each edge it names, and order the edges by round-trip time.

import { rememberInfo } from './transport.js';

const g = typeof globalThis !== 'undefined' ? globalThis : {};

function httpBase(wsURL) {
  const u = new URL(wsURL);
  return (u.protocol === 'wss:' || u.protocol === 'https:' ? 'https://' : 'http://') + u.host;
}

async function timed(f, url, timeoutMs) {
  const ctl = typeof AbortController === 'function' ? new AbortController() : null;
  const t = setTimeout(() => ctl && ctl.abort(), timeoutMs);
  const start = performance.now();
  try {
    const rsp = await f(url, { cache: 'no-store', signal: ctl ? ctl.signal : undefined });
    await rsp.arrayBuffer();
    if (!rsp.ok) return Infinity;
    return performance.now() - start;
  } catch {
    return Infinity;
  } finally {
    clearTimeout(t);
  }
}

/**
 * chooseEdge asks /v1/route of each router (http(s) base URLs of edges),
 * probes every edge named with `probes` GETs of /healthz and returns the
 * edges' WebSocket URLs fastest first (for Realtime's RTMServers option),
 * with the RTT of each (the minimum of its probes, ms; Infinity when
 * unreachable). Each route's `wt` info is remembered for the transport.
 */
export async function chooseEdge({ routers, appId = '', probes = 3, timeoutMs = 2000, fetch } = {}) {
  const f = fetch || g.fetch;
  if (!Array.isArray(routers) || routers.length === 0) throw new TypeError('relaymesh: chooseEdge needs routers');
  const edges = new Map(); // ws URL -> {server, rtt}
  await Promise.all(
    routers.map(async base => {
      const u = new URL('/v1/route', base);
      if (appId) u.searchParams.set('appId', appId);
      try {
        const rsp = await f(u.toString(), { cache: 'no-store' });
        if (!rsp.ok) return;
        const r = await rsp.json();
        for (const s of [r.server, r.secondary]) {
          if (typeof s === 'string' && /^wss?:\/\//.test(s) && !edges.has(s)) edges.set(s, { server: s, rtt: Infinity });
        }
        if (r.wt && typeof r.server === 'string') rememberInfo(r.server, r.wt);
      } catch {
        // an unreachable router names no edge
      }
    }),
  );
  if (edges.size === 0) throw new Error('relaymesh: no router answered');
  await Promise.all(
    [...edges.values()].map(async e => {
      for (let i = 0; i < probes; i++) {
        e.rtt = Math.min(e.rtt, await timed(f, httpBase(e.server) + '/healthz', timeoutMs));
      }
    }),
  );
  const list = [...edges.values()].sort((a, b) => a.rtt - b.rtt);
  return { servers: list.map(e => e.server), rtts: Object.fromEntries(list.map(e => [e.server, e.rtt])) };
}
