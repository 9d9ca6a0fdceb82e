#!/usr/bin/env node
'use strict';
// Concurrent versioned puts (spec §5.8: per-key serialisation), through Arsenal's
// own MetadataFileClient: N clients (separate socket.io connections) each do M
// versioned puts, all to one key, then to random keys. Afterwards, for every key:
// the listing [key, key\x01) has exactly the acknowledged versions, each once, in
// id order (newest first), each holding its own value with its id spliced in, and
// the master is a copy of the newest version.
//
//   node metadata-versioning-load-checks.js --target 127.0.0.1:9990
//        [--clients 16] [--puts 200] [--keys 50] [--rg RG001] [--report FILE]
const crypto = require('crypto');
const fs = require('fs');
const { suite } = require('./lib/runner');
const { openMetadata } = require('./lib/clients');
const { assert } = require('./lib/expect');

const s = suite('metadata-versioning-load', {
    clients: { default: '16', help: 'concurrent clients (one connection each)' },
    puts: { default: '200', help: 'versioned puts per client' },
    keys: { default: '50', help: 'distinct keys for the random-keys run' },
    report: { default: '', help: 'append one JSON line per run (timings) to this file' },
    rg: { default: 'RG001', help: 'replication group id the server was started with' },
});

const RUN = crypto.randomBytes(5).toString('hex');

async function clients(ctx) {
    if (!ctx.state.clients) {
        const n = Number(ctx.opts.clients);
        ctx.state.clients = await Promise.all(Array.from({ length: n }, () => openMetadata(ctx.host, ctx.port, { callTimeoutMs: 60000 })));
        ctx.cleanup(() => ctx.state.clients.forEach(c => c.close()));
    }
    return ctx.state.clients;
}

/**
 * Every client does `puts` versioned puts, one at a time, to keyFor(client, i).
 * Resolves with { acked: Map<key, [{vid, value}]>, ms }.
 */
async function hammer(ctx, sub, keyFor) {
    const cs = await clients(ctx);
    const puts = Number(ctx.opts.puts);
    const acked = new Map();
    const start = Date.now();
    await Promise.all(cs.map(async (c, ci) => {
        const h = c.sub(sub);
        for (let i = 0; i < puts; i++) {
            const key = keyFor(ci, i);
            const value = JSON.stringify({ client: ci, i, pad: 'x'.repeat(64) });
            const res = await h.put(key, value, { versioning: true });
            const { versionId } = JSON.parse(res);
            const rg7 = `${ctx.opts.rg}       `.slice(0, 7);
            assert.ok(/^\d{20}/.test(versionId) && versionId.slice(20, 27) === rg7 && /^\d+$/.test(versionId.slice(27)),
                `version id layout (14+6+7+counter): ${JSON.stringify(versionId)}`);
            if (!acked.has(key)) {
                acked.set(key, []);
            }
            acked.get(key).push({ vid: versionId, value });
        }
    }));
    return { acked, ms: Date.now() - start };
}

async function verify(ctx, sub, acked) {
    const h = (await clients(ctx))[0].sub(sub);
    for (const [key, puts] of acked) {
        const items = await h.list({ gte: key, lt: `${key}\u0001` });
        assert.ok(items.length > 0 && items[0].key === key, `${key}: the master comes first`);
        const versions = items.slice(1);
        const listed = versions.map(v => v.key.slice(key.length + 1));
        for (let i = 1; i < listed.length; i++) {
            assert.ok(listed[i - 1] < listed[i], `${key}: versions in id order (newest first): ${listed[i - 1]} then ${listed[i]}`);
        }
        const want = puts.map(p => p.vid).sort();
        assert.deepStrictEqual(listed, want, `${key}: exactly the ${want.length} acknowledged versions are listed`);
        const byVid = new Map(puts.map(p => [p.vid, p.value]));
        for (const v of versions) {
            const vid = v.key.slice(key.length + 1);
            assert.strictEqual(v.value, `${byVid.get(vid).slice(0, -1)},"versionId":"${vid}"}`, `${key}: version ${vid} holds its own value`);
        }
        assert.strictEqual(items[0].value, versions[0].value, `${key}: the master is the newest version`);
        assert.strictEqual(await h.get(key), versions[0].value, `${key}: get answers the newest version`);
    }
}

function report(ctx, what, acked, ms) {
    const n = [...acked.values()].reduce((a, p) => a + p.length, 0);
    const line = { what, clients: Number(ctx.opts.clients), puts: n, ms, perSec: Math.round(n * 1000 / ms) };
    process.stderr.write(`${JSON.stringify(line)}\n`);
    if (ctx.opts.report) {
        fs.appendFileSync(ctx.opts.report, `${JSON.stringify(line)}\n`);
    }
}

s.check('concurrent versioned puts to ONE key: no version lost, master is the newest', async ctx => {
    const sub = `vload-one-${RUN}`;
    const { acked, ms } = await hammer(ctx, sub, () => 'hot-key');
    report(ctx, 'one key', acked, ms);
    assert.strictEqual(acked.get('hot-key').length, Number(ctx.opts.clients) * Number(ctx.opts.puts));
    await verify(ctx, sub, acked);
}, { timeoutMs: 300000 });

s.check('concurrent versioned puts to random keys: no version lost, masters are the newest', async ctx => {
    const sub = `vload-rand-${RUN}`;
    const nkeys = Number(ctx.opts.keys);
    const { acked, ms } = await hammer(ctx, sub, () => `k${crypto.randomInt(nkeys)}`);
    report(ctx, 'random keys', acked, ms);
    await verify(ctx, sub, acked);
}, { timeoutMs: 300000 });

s.run();
