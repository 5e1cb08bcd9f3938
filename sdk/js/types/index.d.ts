// Types of @relaymesh/realtime-transport.

/** Which transport carries the SDK's connection. */
export type TransportName = 'webtransport' | 'websocket';

/** auto: WebTransport, else WebSocket; or force one of them. */
export type Mode = 'auto' | 'webtransport' | 'websocket';

export interface Options {
  /** Default 'auto'. */
  mode?: Mode;
  /** Send transient directs (typing indicators) as datagrams. Default true. */
  datagrams?: boolean;
  /** Bound on fetching the certificate hash, the session and its stream. Default 5000. */
  connectTimeoutMs?: number;
  /** After WebTransport failed, go straight to WebSocket for this long. Default 60000. */
  retryWebTransportAfterMs?: number;
  /** Default: globalThis.WebTransport when connecting. */
  WebTransport?: unknown;
  /** Default: globalThis.WebSocket when connecting (the fallback). */
  WebSocket?: unknown;
  /** Default: globalThis.fetch. */
  fetch?: typeof fetch;
}

/** The transport of the most recent connection (its counters are that connection's). */
export interface TransportState {
  transport: TransportName | null;
  url: string | null;
  /** Why WebSocket is used, when it is. */
  fallbackReason: string | null;
  datagramsIn: number;
  datagramsOut: number;
  framesIn: number;
  framesOut: number;
  /** Connections opened since the page loaded. */
  connections: number;
  /** How the most recent connection that ended was closed. */
  lastClose: { transport: TransportName | null; code: number; reason: string } | null;
}

export const state: Readonly<TransportState>;
export function onTransport(fn: (s: TransportState) => void): () => void;
export function configure(opts: Options): void;
export function options(): Options;

export interface CloseEventLike {
  type: 'close';
  code: number;
  reason: string;
  wasClean: boolean;
  target: RelayWebSocket;
}
export interface MessageEventLike {
  type: 'message';
  data: ArrayBuffer | string;
  target: RelayWebSocket;
}

/** A WebSocket look-alike for leancloud-realtime, over WebTransport or WebSocket. */
export class RelayWebSocket {
  static readonly CONNECTING: 0;
  static readonly OPEN: 1;
  static readonly CLOSING: 2;
  static readonly CLOSED: 3;
  readonly CONNECTING: 0;
  readonly OPEN: 1;
  readonly CLOSING: 2;
  readonly CLOSED: 3;
  constructor(url: string, protocols?: string | string[], opts?: Options);
  readonly url: string;
  readonly readyState: 0 | 1 | 2 | 3;
  readonly protocol: string;
  readonly extensions: string;
  readonly bufferedAmount: number;
  binaryType: 'arraybuffer' | 'blob';
  /** Set once open. */
  readonly transport: TransportName | null;
  readonly fallbackReason: string | null;
  onopen: ((ev: { type: 'open' }) => void) | null;
  onmessage: ((ev: MessageEventLike) => void) | null;
  onclose: ((ev: CloseEventLike) => void) | null;
  onerror: ((ev: { type: 'error'; error?: unknown }) => void) | null;
  addEventListener(type: 'open' | 'message' | 'close' | 'error', fn: (ev: any) => void): void;
  removeEventListener(type: 'open' | 'message' | 'close' | 'error', fn: (ev: any) => void): void;
  send(data: ArrayBuffer | ArrayBufferView | string): void;
  close(code?: number, reason?: string): void;
}

/** A RelayWebSocket class with its own options: setAdapters({WebSocket: createWebSocketAdapter()}) in leancloud-realtime 5. */
export function createWebSocketAdapter(opts?: Options): typeof RelayWebSocket;

/** Replaces globalThis.WebSocket (for realtime.browser.js loaded after it); returns the native one. */
export function installGlobal(target?: { WebSocket?: unknown }): unknown;

export interface EdgeWebTransportInfo {
  url: string;
  certificateHashes?: { algorithm: string; value: string }[];
}
export function certificateHashes(info: EdgeWebTransportInfo): { algorithm: 'sha-256'; value: Uint8Array }[];
export function decodeBase64(s: string): Uint8Array;
export function wtURLFromWS(url: string): string;
export function infoURLFromWS(url: string): string;
export function rememberInfo(wsURL: string, info: EdgeWebTransportInfo): void;

export interface ChooseEdgeOptions {
  /** http(s) base URLs whose /v1/route to ask. */
  routers: string[];
  appId?: string;
  /** GETs of /healthz per edge; the minimum is its RTT. Default 3. */
  probes?: number;
  timeoutMs?: number;
  fetch?: typeof fetch;
}
/** Edges' WebSocket URLs, fastest first, for Realtime's RTMServers. */
export function chooseEdge(opts: ChooseEdgeOptions): Promise<{ servers: string[]; rtts: Record<string, number> }>;

export const MAX_FRAME_BYTES: number;
export function encodeFrame(payload: ArrayBuffer | ArrayBufferView | string): Uint8Array;
export class FrameError extends Error {}
export class FrameReader {
  constructor(maxFrame?: number);
  push(chunk: ArrayBuffer | ArrayBufferView): ArrayBuffer[];
  readonly pending: number;
}
export function isTransientDirect(frame: ArrayBuffer | ArrayBufferView): boolean;
