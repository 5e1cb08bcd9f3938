// Builds relaymesh's demo page bundle, web/static/demo.js: the official
// leancloud-realtime 4.3.1 with its WebSocket slot (the module `ws`, which
// its dist/realtime.js requires) filled by this package, plus
// web/src/demo.js. Run by `make js`; the output is committed so `make test`
// and `make run` need no bundling step.
import * as esbuild from 'esbuild';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const pkg = path.resolve(here, '..');
const repo = path.resolve(pkg, '../..');
const require = createRequire(path.join(pkg, 'package.json'));
const realtimeDir = path.dirname(require.resolve('leancloud-realtime/package.json'));

const relaymesh = {
  name: 'relaymesh-websocket-slot',
  setup(build) {
    // The Node build (dist/realtime.js) takes WebSocket from require('ws');
    // the package's "browser" field would swap in realtime.browser.js, which
    // reads globalThis.WebSocket instead. Take the Node build and fill `ws`.
    build.onResolve({ filter: /^leancloud-realtime$/ }, () => ({ path: path.join(realtimeDir, 'dist/realtime.js') }));
    build.onResolve({ filter: /^ws$/ }, () => ({ path: path.join(pkg, 'src/ws.js') }));
    build.onResolve({ filter: /^@relaymesh\/realtime-transport$/ }, () => ({ path: path.join(pkg, 'src/index.js') }));
  },
};

const out = process.argv[2] || path.join(repo, 'web/static/demo.js');
await esbuild.build({
  entryPoints: [path.join(repo, 'web/src/demo.js')],
  outfile: out,
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['chrome110', 'firefox115', 'safari16'],
  minify: true,
  legalComments: 'eof',
  nodePaths: [path.join(pkg, 'node_modules')],
  // dist/realtime.js reads process.env.RTM_SERVER_NAME (an internal option).
  define: { 'process.env.NODE_ENV': '"production"', 'process.env.RTM_SERVER_NAME': 'undefined' },
  plugins: [relaymesh],
  logLevel: 'info',
});
