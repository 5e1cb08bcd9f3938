// The WebSocket slot of leancloud-realtime 4.x: its dist/realtime.js does
// require('ws'). Alias the module `ws` to this file when bundling the SDK
// (esbuild: a plugin or `alias: {ws: '@relaymesh/realtime-transport/ws'}`)
// and the SDK's connections go through RelayWebSocket.
import { RelayWebSocket } from './transport.js';

export default RelayWebSocket;
