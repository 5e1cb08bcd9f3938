// web/static/demo.js is committed; it must be what `make js` builds now.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

test('the committed demo bundle is up to date (run `make js`)', () => {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'relaymesh-demo-')), 'demo.js');
  execFileSync(process.execPath, [path.join(here, '../scripts/build-demo.mjs'), out], { stdio: 'pipe' });
  const built = fs.readFileSync(out, 'utf8');
  const committed = fs.readFileSync(path.join(here, '../../../web/static/demo.js'), 'utf8');
  assert.ok(built === committed, 'web/static/demo.js differs from a fresh build: run `make js` and commit it');
  // The bundle has the SDK and the transport, and the SDK's slot is ours.
  assert.match(built, /leancloud|LeanCloud/);
  assert.match(built, /WebTransport failed/);
  assert.doesNotMatch(built, /require\("ws"\)/);
});
