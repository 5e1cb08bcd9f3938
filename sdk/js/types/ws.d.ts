// The module to alias `ws` to when bundling leancloud-realtime 4.x.
import { RelayWebSocket } from './index.js';
export default RelayWebSocket;
