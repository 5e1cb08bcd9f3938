// Test doubles: a WebTransport with the browser's API shape whose server
// side the test drives, a WebSocket, and fetch.

export class FakeWebTransport {
  static instances = [];
  // 'ok', 'fail' (ready rejects) or 'hang' (ready never settles); shifted
  // per instance from plan, then `behavior`.
  static behavior = 'ok';
  static plan = [];

  constructor(url, init) {
    this.url = url;
    this.init = init;
    this.clientWrites = []; // Uint8Array chunks written on the stream
    this.clientDatagrams = [];
    this.closeCalls = [];
    FakeWebTransport.instances.push(this);
    const behavior = FakeWebTransport.plan.length ? FakeWebTransport.plan.shift() : FakeWebTransport.behavior;
    this.closed = new Promise((resolve, reject) => {
      this._resolveClosed = resolve;
      this._rejectClosed = reject;
    });
    if (behavior === 'ok') this.ready = Promise.resolve();
    else if (behavior === 'fail') this.ready = Promise.reject(new Error('WebTransportError: connection refused'));
    else this.ready = new Promise(() => {});
    this.ready.catch(() => {});
    const self = this;
    this.datagrams = {
      maxDatagramSize: 1200,
      readable: new ReadableStream({
        start(c) {
          self._dgCtl = c;
        },
      }),
      writable: new WritableStream({
        write(chunk) {
          self.clientDatagrams.push(new Uint8Array(chunk));
        },
      }),
    };
  }

  async createBidirectionalStream() {
    const self = this;
    this.stream = {
      readable: new ReadableStream({
        start(c) {
          self._ctl = c;
        },
      }),
      writable: new WritableStream({
        write(chunk) {
          self.clientWrites.push(new Uint8Array(chunk));
        },
        close() {
          self.clientFin = true;
        },
      }),
    };
    return this.stream;
  }

  close(info) {
    this.closeCalls.push(info);
    this._end(info || { closeCode: 0, reason: '' });
  }

  _end(info) {
    try {
      this._ctl && this._ctl.error(new Error('session closed'));
    } catch {}
    try {
      this._dgCtl && this._dgCtl.close();
    } catch {}
    this._resolveClosed(info);
  }

  // The server side.
  serverWrite(bytes) {
    this._ctl.enqueue(new Uint8Array(bytes));
  }
  serverFin() {
    this._ctl.close();
  }
  serverDatagram(bytes) {
    this._dgCtl.enqueue(new Uint8Array(bytes));
  }
  serverClose(closeCode, reason) {
    this._resolveClosed({ closeCode, reason });
    try {
      this._dgCtl.close();
    } catch {}
  }
  // Everything the client wrote on the stream, concatenated.
  written() {
    const n = this.clientWrites.reduce((a, c) => a + c.length, 0);
    const out = new Uint8Array(n);
    let o = 0;
    for (const c of this.clientWrites) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

export class FakeWebSocket {
  static instances = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.readyState = 0;
    this.protocol = '';
    FakeWebSocket.instances.push(this);
    setTimeout(() => {
      this.readyState = 1;
      this.protocol = Array.isArray(protocols) ? protocols[0] : protocols || '';
      this.onopen && this.onopen({ type: 'open' });
    }, 1);
  }
  send(d) {
    this.sent.push(d);
  }
  close(code = 1000, reason = '') {
    this.readyState = 3;
    this.onclose && this.onclose({ code, reason });
  }
}

export const HASH = Buffer.alloc(32, 7).toString('base64');

// fakeFetch answers /v1/webtransport with info (or a status), recording URLs.
export function fakeFetch(answer = { url: 'https://edge.test:8080/wt', certificateHashes: [{ algorithm: 'sha-256', value: HASH }] }, status = 200) {
  const f = async url => {
    f.calls.push(url);
    return {
      ok: status >= 200 && status < 300,
      status,
      json: async () => answer,
      arrayBuffer: async () => new ArrayBuffer(0),
    };
  };
  f.calls = [];
  return f;
}

export function reset() {
  FakeWebTransport.instances = [];
  FakeWebTransport.behavior = 'ok';
  FakeWebTransport.plan = [];
  FakeWebSocket.instances = [];
}

export const tick = (ms = 5) => new Promise(r => setTimeout(r, ms));

export async function until(fn, ms = 2000) {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error('condition not met');
    await tick(2);
  }
}

// Protobuf bytes of GenericCommands, written by hand.
function varint(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

export function directCommand({ transient = false, text = 'hi' } = {}) {
  const msg = new TextEncoder().encode(text);
  // DirectCommand: msg (field 1, string), transient (field 13, varint)
  const inner = [0x0a, ...varint(msg.length), ...msg];
  if (transient) inner.push(0x68, 0x01);
  // GenericCommand: cmd=direct (field 1 = 2), directMessage (field 104, bytes)
  return new Uint8Array([0x08, 0x02, 0xc2, 0x06, ...varint(inner.length), ...inner]);
}
