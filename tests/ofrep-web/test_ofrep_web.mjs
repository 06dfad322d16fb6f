// An unmodified OpenFeature web client (the published web SDK and OFREP web provider) against a
// real `vexil serve`: it evaluates from its bulk cache, connects to the event stream the bulk
// answer names (with the browser's EventSource API, provided here by the `eventsource` package,
// so with no headers), and an admin change reaches it as ConfigurationChanged with no polling.
//
// Usage: node test_ofrep_web.mjs PATH_TO_VEXIL_BINARY
// Prints each check, then "ofrep-web: N passed, N failed"; exits non-zero when any check failed.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { EventSource } from 'eventsource';
import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

globalThis.EventSource = EventSource;
const ADMIN_KEY = 'vx_ofrep_web_test_admin_key_0123';
const PATIENCE_MS = 30000;

let passed = 0;
let failed = 0;
function expect(name, actual, expected) {
  if (JSON.stringify(actual) === JSON.stringify(expected)) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

/** Starts `vexil serve` on a free loopback port; resolves with the process and its base URL. */
function startServer(binary, dataDir) {
  const server = spawn(binary, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
    env: { VEXIL_ADMIN_KEY: ADMIN_KEY, PATH: '/usr/bin:/bin' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('vexil serve did not start')), PATIENCE_MS);
    createInterface({ input: server.stderr }).on('line', (line) => {
      let fields;
      try {
        fields = JSON.parse(line).fields ?? {};
      } catch {
        return;
      }
      if (fields.message === 'listening') {
        clearTimeout(timer);
        resolve({ server, base: `http://${fields.address}` });
      }
    });
    server.on('exit', () => reject(new Error('vexil serve exited')));
  });
}

function within(promise, what) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: nothing in ${PATIENCE_MS} ms`)), PATIENCE_MS)),
  ]);
}

async function run(base) {
  const admin = async (method, path, body) => {
    const response = await fetch(base + path, {
      method,
      headers: { Authorization: `Bearer ${ADMIN_KEY}`, 'Content-Type': 'application/json' },
      body: body && JSON.stringify(body),
    });
    return response.json();
  };
  await admin('POST', '/v1/admin/flags', { key: 'banner', enabled: true, default: { variant: 'off' } });
  const key = (await admin('POST', '/v1/admin/keys', { kind: 'client', name: 'ofrep web test' })).key;

  // Every request the provider makes, keys masked: which routes it used and with what.
  const requests = [];
  const realFetch = globalThis.fetch;
  globalThis.fetch = (url, init) => {
    requests.push((url instanceof Request ? url.url : String(url)).replace(base, '').replace(key, '<key>'));
    return realFetch(url, init);
  };
  await OpenFeature.setContext({ targetingKey: 'user_1' });
  // pollInterval 0: no polling, so only the event stream can bring the change.
  const provider = new OFREPWebProvider({ baseUrl: base, headers: [['Authorization', `Bearer ${key}`]], pollInterval: 0 });
  await OpenFeature.setProviderAndWait(provider);
  const client = OpenFeature.getClient();
  expect('evaluates from the bulk answer', client.getBooleanDetails('banner', true).value, false);

  const changed = new Promise((resolve) => client.addHandler(ProviderEvents.ConfigurationChanged, resolve));
  // The stream opens after the bulk answer; wait until the provider has used it once (its
  // first message leads to a re-fetch with flagConfigEtag).
  await within(
    (async () => {
      while (!requests.some((r) => r.includes('flagConfigEtag'))) await new Promise((r) => setTimeout(r, 20));
    })(),
    'the first refetchEvaluation',
  );
  expect('connects to the event stream with the key in the URI', requests.includes('/ofrep/v1/event-stream?key=<key>'), true);
  await admin('PUT', '/v1/admin/flags/banner', { key: 'banner', enabled: true, default: { variant: 'on' } });
  const event = await within(changed, 'ConfigurationChanged');
  expect('an admin change arrives as ConfigurationChanged', event.flagsChanged, ['banner']);
  const details = client.getBooleanDetails('banner', false);
  expect('the new value is served', [details.value, details.variant, details.reason], [true, 'on', 'STATIC']);
  const refetches = requests.filter((r) => r.startsWith('/ofrep/v1/evaluate/flags?flagConfigEtag='));
  expect('re-fetches carry flagConfigEtag', refetches.length >= 2, true);
  await OpenFeature.close();
}

const binary = process.argv[2];
const dataDir = mkdtempSync(join(tmpdir(), 'vexil-ofrep-web-'));
const { server, base } = await startServer(binary, dataDir);
try {
  await run(base);
} catch (error) {
  failed++;
  console.log(`FAIL ${error.message}`);
} finally {
  server.kill();
  rmSync(dataDir, { recursive: true, force: true });
}
console.log(`ofrep-web: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
