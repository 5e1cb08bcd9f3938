// Helpers shared by the conformance suites.
'use strict';

const assert = require('node:assert/strict');

const rnd = () => Math.random().toString(36).slice(2, 10);
const sleep = ms => new Promise(r => setTimeout(r, ms));

// once resolves with the arguments of the first `event` emitted by `emitter`
// that satisfies pred, or rejects after ms.
function once(emitter, event, pred = () => true, ms = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`timed out waiting for ${event}`));
    }, ms);
    function handler(...args) {
      if (!pred(...args)) return;
      clearTimeout(timer);
      emitter.off(event, handler);
      resolve(args);
    }
    emitter.on(event, handler);
  });
}

// collect gathers every `event` from emitter into an array.
function collect(emitter, event) {
  const got = [];
  emitter.on(event, (...args) => got.push(args));
  return got;
}

// until polls fn until it returns a truthy value, or throws after ms.
async function until(fn, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(50);
  }
}

// rejects asserts that p rejects with the LeanCloud error code.
async function rejects(p, code, what) {
  await assert.rejects(p, e => {
    assert.equal(e.code, code, `${what}: got ${e.code} ${e.message}`);
    return true;
  }, what);
}

module.exports = { rnd, sleep, once, collect, until, rejects };
