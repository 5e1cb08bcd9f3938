// @relaymesh/realtime-transport: LeanCloud's realtime SDK over WebTransport.
export {
  RelayWebSocket,
  createWebSocketAdapter,
  configure,
  options,
  state,
  onTransport,
  certificateHashes,
  decodeBase64,
  wtURLFromWS,
  infoURLFromWS,
  rememberInfo,
} from './transport.js';
export { chooseEdge } from './route.js';
export { encodeFrame, FrameReader, FrameError, isTransientDirect, MAX_FRAME_BYTES } from './frame.js';

import { RelayWebSocket } from './transport.js';

/**
 * installGlobal replaces globalThis.WebSocket by RelayWebSocket, for
 * leancloud-realtime's prebuilt browser bundle (realtime.browser.js),
 * which reads the global when it loads: call it before loading the SDK.
 * It returns the WebSocket it replaced (used for the fallback).
 */
export function installGlobal(target = globalThis) {
  const native = target.WebSocket;
  if (native === RelayWebSocket) return native;
  configureNative(native);
  target.WebSocket = RelayWebSocket;
  return native;
}

import { configure } from './transport.js';
function configureNative(native) {
  if (typeof native === 'function') configure({ WebSocket: native });
}
