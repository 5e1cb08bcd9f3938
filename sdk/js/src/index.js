// @relaymesh/realtime-transport: LeanCloud's realtime SDK over WebTransport.
import { RelayWebSocket, configure } from './transport.js';

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

/**
 * installGlobal replaces target.WebSocket (globalThis by default) by
 * RelayWebSocket, for leancloud-realtime's prebuilt browser bundle
 * (realtime.browser.js), which reads the global when it loads: call it
 * before loading the SDK. The native WebSocket it replaces becomes the
 * fallback; it is returned.
 */
export function installGlobal(target = globalThis) {
  const native = target.WebSocket;
  if (native === RelayWebSocket) return native;
  if (typeof native === 'function') configure({ WebSocket: native });
  target.WebSocket = RelayWebSocket;
  return native;
}
