// A WebSocket-like object for the LeanCloud realtime SDK that carries the
// SDK's frames over WebTransport (one bidirectional stream of
// varint-delimited GenericCommand frames, transient directs as datagrams)
// and falls back to a real WebSocket when the browser or the network lacks
// WebTransport. docs/WEBTRANSPORT.md in relaymesh.

import { FrameError, FrameReader, encodeFrame, isTransientDirect, toBytes } from './frame.js';

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

const g = typeof globalThis !== 'undefined' ? globalThis : {};

/** The options every adapter starts from; change them with configure(). */
const defaults = {
  mode: 'auto', // 'auto' | 'webtransport' | 'websocket'
  datagrams: true,
  connectTimeoutMs: 5000,
  // After WebTransport failed to connect where a WebSocket then did,
  // reconnects go straight to WebSocket for this long.
  retryWebTransportAfterMs: 60000,
  WebTransport: undefined, // default: globalThis.WebTransport at connect time
  WebSocket: undefined, // default: globalThis.WebSocket at connect time
  fetch: undefined, // default: globalThis.fetch
};

/** state describes the transport of the most recent connection. */
export const state = {
  transport: null, // 'webtransport' | 'websocket' | null
  url: null,
  fallbackReason: null,
  datagramsIn: 0,
  datagramsOut: 0,
  framesIn: 0,
  framesOut: 0,
  connections: 0,
  // The close of the most recent connection that ended (the edge's code:
  // 4107 idle, 1001 going away, …), or null.
  lastClose: null,
};

const listeners = new Set();

/** onTransport calls fn(state) whenever a connection opens; it returns an unsubscribe function. */
export function onTransport(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function announce() {
  for (const fn of listeners) {
    try {
      fn({ ...state });
    } catch (e) {
      console.error(e);
    }
  }
}

/** configure changes the options of every adapter made after and of RelayWebSocket. */
export function configure(opts) {
  for (const k of Object.keys(opts || {})) {
    if (!(k in defaults)) throw new TypeError('relaymesh: unknown option ' + k);
    defaults[k] = opts[k];
  }
  if (defaults.mode !== 'auto' && defaults.mode !== 'webtransport' && defaults.mode !== 'websocket') {
    const m = defaults.mode;
    defaults.mode = 'auto';
    throw new TypeError('relaymesh: mode must be auto, webtransport or websocket, not ' + m);
  }
}

/** options returns a copy of the current defaults. */
export function options() {
  return { ...defaults };
}

/** wtURLFromWS derives an edge's WebTransport URL from its WebSocket URL: ws(s)://H/… → https://H/wt. */
export function wtURLFromWS(url) {
  const u = new URL(url);
  return 'https://' + u.host + '/wt';
}

/** infoURLFromWS is the edge's /v1/webtransport for a WebSocket URL (ws → http, wss → https). */
export function infoURLFromWS(url) {
  const u = new URL(url);
  return (u.protocol === 'wss:' ? 'https://' : 'http://') + u.host + '/v1/webtransport';
}

/** decodeBase64 decodes standard base64 into a Uint8Array. */
export function decodeBase64(s) {
  if (typeof s !== 'string') throw new TypeError('relaymesh: certificate hash is not a string');
  const bin = g.atob ? g.atob(s) : Buffer.from(s, 'base64').toString('binary');
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * certificateHashes turns the edge's JSON (/v1/webtransport, or /v1/route's
 * `wt`) into WebTransport's serverCertificateHashes; [] for a certificate
 * browsers trust by its chain.
 */
export function certificateHashes(info) {
  const out = [];
  for (const h of (info && info.certificateHashes) || []) {
    const value = decodeBase64(h.value);
    if (h.algorithm !== 'sha-256' || value.length !== 32) {
      throw new TypeError('relaymesh: bad certificate hash ' + JSON.stringify(h));
    }
    out.push({ algorithm: 'sha-256', value });
  }
  return out;
}

// The WebTransport info per WebSocket host, from /v1/route (route.js) or
// /v1/webtransport. Dropped when a session fails (a dev certificate may
// have been renewed).
const infoCache = new Map();
let wtFailedAt = -Infinity;

/** rememberInfo records an edge's WebTransport info (route.js calls it). */
export function rememberInfo(wsURL, info) {
  infoCache.set(new URL(wsURL).host, info);
}

async function getInfo(wsURL, opts) {
  const host = new URL(wsURL).host;
  const cached = infoCache.get(host);
  if (cached) return cached;
  const f = opts.fetch || g.fetch;
  const rsp = await f(infoURLFromWS(wsURL), { cache: 'no-store' });
  if (rsp.status === 404) throw new Error('the edge serves no WebTransport');
  if (!rsp.ok) throw new Error('/v1/webtransport: HTTP ' + rsp.status);
  const info = await rsp.json();
  if (!info || typeof info.url !== 'string') throw new Error('/v1/webtransport: no url');
  infoCache.set(host, info);
  return info;
}

function withTimeout(p, ms, what) {
  let t;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(what + ' timed out after ' + ms + ' ms')), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

function messageEvent(target, data) {
  return { type: 'message', data, target };
}

/**
 * RelayWebSocket looks like a WebSocket to the LeanCloud SDK: new
 * RelayWebSocket(url, protocol), binaryType, readyState, protocol, send,
 * close, onopen/onmessage/onclose/onerror and addEventListener. Received
 * messages are ArrayBuffers. `transport` says which transport carries it.
 */
export class RelayWebSocket {
  constructor(url, protocols, opts) {
    this.url = String(url);
    this._opts = { ...defaults, ...(opts || this.constructor._adapterOptions || {}) };
    const list = protocols === undefined ? [] : Array.isArray(protocols) ? protocols : [protocols];
    this._requested = list;
    this.protocol = '';
    this.binaryType = 'arraybuffer';
    this.bufferedAmount = 0;
    this.extensions = '';
    this.readyState = CONNECTING;
    this.transport = null;
    this.fallbackReason = null;
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
    this._listeners = {};
    this._closeEmitted = false;
    this._connect().catch(err => this._fail(err));
  }

  addEventListener(type, fn) {
    (this._listeners[type] ||= new Set()).add(fn);
  }

  removeEventListener(type, fn) {
    this._listeners[type]?.delete(fn);
  }

  _emit(type, ev) {
    const h = this['on' + type];
    if (typeof h === 'function') h.call(this, ev);
    for (const fn of this._listeners[type] || []) fn.call(this, ev);
  }

  async _connect() {
    const o = this._opts;
    const WT = o.WebTransport || g.WebTransport;
    let reason = null;
    if (o.mode === 'websocket') {
      reason = 'WebSocket forced';
    } else if (typeof WT !== 'function') {
      reason = 'this browser has no WebTransport';
    } else if (o.mode === 'auto' && Date.now() - wtFailedAt < o.retryWebTransportAfterMs) {
      reason = 'WebTransport failed recently';
    } else {
      const host = new URL(this.url).host;
      const cached = infoCache.get(host);
      try {
        await this._openWT(WT);
        return;
      } catch (err) {
        if (this.readyState !== CONNECTING) return;
        infoCache.delete(host);
        let failure = err;
        // A cached certificate hash may be stale (a dev certificate is
        // renewed): when the edge now names another, retry once with it.
        if (cached) {
          try {
            const fresh = await withTimeout(getInfo(this.url, o), o.connectTimeoutMs, '/v1/webtransport');
            if (JSON.stringify(fresh) !== JSON.stringify(cached)) {
              await this._openWT(WT);
              return;
            }
          } catch (err2) {
            if (this.readyState !== CONNECTING) return;
            infoCache.delete(host);
            failure = err2;
          }
        }
        if (o.mode === 'webtransport') throw failure;
        this._wtFailed = true; // counts once the WebSocket gets through (_openWS)
        reason = 'WebTransport failed: ' + (failure && failure.message ? failure.message : failure);
      }
    }
    this._openWS(reason);
  }

  async _openWT(WT) {
    const o = this._opts;
    const proto = this._requested[0] || 'lc.protobuf2.3';
    if (!/^lc\.protobuf2\.[13]$/.test(proto)) throw new Error('subprotocol ' + proto + ' is not served over WebTransport');
    const info = await withTimeout(getInfo(this.url, o), o.connectTimeoutMs, '/v1/webtransport');
    let url = info.url || wtURLFromWS(this.url);
    if (proto !== 'lc.protobuf2.3') url += (url.includes('?') ? '&' : '?') + 'subprotocol=' + encodeURIComponent(proto);
    const init = {};
    const hashes = certificateHashes(info);
    if (hashes.length) init.serverCertificateHashes = hashes;
    const wt = new WT(url, init);
    this._wt = wt;
    wt.closed.catch(() => {}); // observed in _readStream
    try {
      await withTimeout(wt.ready, o.connectTimeoutMs, 'WebTransport connect');
      const bidi = await withTimeout(wt.createBidirectionalStream(), o.connectTimeoutMs, 'WebTransport stream');
      this._writer = bidi.writable.getWriter();
      this._reader = bidi.readable.getReader();
      if (o.datagrams && wt.datagrams && wt.datagrams.writable) this._dgWriter = wt.datagrams.writable.getWriter();
    } catch (err) {
      try {
        wt.close();
      } catch {}
      this._wt = null;
      throw err;
    }
    if (this.readyState !== CONNECTING) {
      try {
        wt.close();
      } catch {}
      return;
    }
    this.transport = 'webtransport';
    this.protocol = proto;
    this._opened();
    this._readStream(wt);
    if (wt.datagrams && wt.datagrams.readable) this._readDatagrams(wt);
  }

  _opened() {
    this.readyState = OPEN;
    Object.assign(state, {
      transport: this.transport,
      url: this.url,
      fallbackReason: this.fallbackReason,
      connections: state.connections + 1,
      // the counters are this connection's
      datagramsIn: 0,
      datagramsOut: 0,
      framesIn: 0,
      framesOut: 0,
    });
    announce();
    this._emit('open', { type: 'open', target: this });
  }

  async _readStream(wt) {
    const fr = new FrameReader();
    let code = 1006;
    let reason = '';
    try {
      for (;;) {
        const { value, done } = await this._reader.read();
        if (done) break;
        for (const f of fr.push(value)) {
          state.framesIn++;
          this._emit('message', messageEvent(this, f));
        }
      }
      if (fr.pending > 0) throw new FrameError('stream ended inside a frame');
    } catch (err) {
      if (err instanceof FrameError) {
        code = 1002;
        reason = err.message;
        try {
          wt.close({ closeCode: 1002, reason: err.message });
        } catch {}
      }
    }
    try {
      // The edge writes what is queued and ends its side of the stream
      // before it closes the session: the code comes after the data.
      const info = await withTimeout(wt.closed, 2000, 'close');
      if (code !== 1002) {
        code = info && typeof info.closeCode === 'number' ? info.closeCode : 1000;
        reason = (info && info.reason) || '';
      }
    } catch (err) {
      if (!reason) reason = (err && err.message) || '';
      try {
        wt.close();
      } catch {}
    }
    this._closed(code, reason);
  }

  async _readDatagrams(wt) {
    const r = wt.datagrams.readable.getReader();
    try {
      for (;;) {
        const { value, done } = await r.read();
        if (done) return;
        if (this.readyState !== OPEN) continue;
        state.datagramsIn++;
        this._emit('message', messageEvent(this, toBytes(value).slice().buffer));
      }
    } catch {
      // the session ended; _readStream reports it
    }
  }

  _openWS(reason) {
    const WS = this._opts.WebSocket || g.WebSocket;
    if (typeof WS !== 'function') throw new Error('relaymesh: no WebSocket either (' + reason + ')');
    if (WS === RelayWebSocket || WS.prototype instanceof RelayWebSocket) {
      throw new Error('relaymesh: the fallback WebSocket is RelayWebSocket itself (configure({WebSocket}) with the native one)');
    }
    this.fallbackReason = reason;
    const ws = this._requested.length ? new WS(this.url, this._requested) : new WS(this.url);
    ws.binaryType = 'arraybuffer';
    this._ws = ws;
    ws.onopen = () => {
      if (this.readyState !== CONNECTING) return;
      // WebTransport failed where a WebSocket gets through: this network
      // or browser lacks it, so reconnects skip it for a while. (When both
      // fail, the edge is down: its next start is tried over WebTransport.)
      if (this._wtFailed) wtFailedAt = Date.now();
      this.transport = 'websocket';
      this.protocol = ws.protocol;
      this._opened();
    };
    ws.onmessage = ev => {
      state.framesIn++;
      let data = ev.data;
      if (data && !(data instanceof ArrayBuffer) && ArrayBuffer.isView(data)) data = toBytes(data).slice().buffer;
      this._emit('message', messageEvent(this, data));
    };
    ws.onerror = () => this._emit('error', { type: 'error', target: this });
    ws.onclose = ev => this._closed(ev.code, ev.reason);
  }

  _fail(err) {
    if (this._closeEmitted) return;
    this.fallbackReason = this.fallbackReason || String((err && err.message) || err);
    this._emit('error', { type: 'error', target: this, error: err, message: String(err && err.message) });
    this._closed(1006, String((err && err.message) || err));
  }

  _closed(code, reason) {
    if (this._closeEmitted) return;
    this._closeEmitted = true;
    if (this.readyState !== CONNECTING) state.lastClose = { transport: this.transport, code, reason };
    this.readyState = CLOSED;
    this._emit('close', { type: 'close', code, reason, wasClean: code === 1000, target: this });
  }

  send(data) {
    if (this.readyState === CONNECTING) throw new Error('InvalidStateError: still connecting');
    if (this.readyState !== OPEN) return; // as a WebSocket: dropped once closing
    state.framesOut++;
    if (this._ws) {
      this._ws.send(data);
      return;
    }
    const b = toBytes(data);
    const dg = this._dgWriter;
    const max = this._wt && this._wt.datagrams && this._wt.datagrams.maxDatagramSize;
    if (dg && isTransientDirect(b) && (!max || b.length <= max)) {
      state.datagramsOut++;
      dg.write(b.slice()).catch(() => {});
      return;
    }
    this._writer.write(encodeFrame(b)).catch(err => this._fail(err));
  }

  close(code, reason) {
    if (this.readyState === CLOSING || this.readyState === CLOSED) return;
    const wasConnecting = this.readyState === CONNECTING;
    this.readyState = CLOSING;
    if (this._ws) {
      this._ws.close(code, reason);
      return;
    }
    if (this._wt) {
      // Closing our side of the stream between frames is a clean close (1000).
      if (this._writer) this._writer.close().catch(() => {});
      try {
        this._wt.close({ closeCode: code || 1000, reason: reason || '' });
      } catch {}
    }
    if (wasConnecting || !this._wt) this._closed(code || 1000, reason || '');
  }
}

for (const [k, v] of Object.entries({ CONNECTING, OPEN, CLOSING, CLOSED })) {
  RelayWebSocket[k] = v;
  RelayWebSocket.prototype[k] = v;
}

/**
 * createWebSocketAdapter returns a WebSocket class with these options
 * (over configure()'s): for leancloud-realtime 5's
 * setAdapters({WebSocket: createWebSocketAdapter()}).
 */
export function createWebSocketAdapter(opts) {
  const o = { ...(opts || {}) };
  for (const k of Object.keys(o)) if (!(k in defaults)) throw new TypeError('relaymesh: unknown option ' + k);
  class Adapter extends RelayWebSocket {}
  Object.defineProperty(Adapter, '_adapterOptions', { get: () => ({ ...defaults, ...o }) });
  return Adapter;
}

/** _resetForTests forgets cached edge info and recent failures. */
export function _resetForTests() {
  infoCache.clear();
  wtFailedAt = -Infinity;
  Object.assign(state, { transport: null, url: null, fallbackReason: null, datagramsIn: 0, datagramsOut: 0, framesIn: 0, framesOut: 0, connections: 0, lastClose: null });
}
