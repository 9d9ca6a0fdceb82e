#!/usr/bin/env node
'use strict';
// Versioning workloads against one metadata server, through Arsenal's own
// MetadataFileClient; one JSON line per workload on stdout:
//   {name, concurrency, ops, ops_per_s, p50_ms, p99_ms, server_cpu_us_per_op}
// Used by bench/versioning.sh (side by side with the reference). Needs scripts/deps/arsenal.sh.
//
//   node bench/versioning-bench.js --target HOST:PORT --pid SERVER_PID [--scale 1]
const fs = require('fs');
const path = require('path');
const { openMetadata } = require(path.join(__dirname, '..', 'tests', 'arsenal', 'lib', 'clients'));

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
    return acc;
}, []));
const [host, port] = args.target.split(':');
const pid = Number(args.pid);
const scale = Number(args.scale || 1);
const RUN = Date.now().toString(36);

function cpuTicks() {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
}

async function measure(name, concurrency, perCaller, clients, op) {
    const lat = [];
    const cpu0 = cpuTicks();
    const t0 = process.hrtime.bigint();
    await Promise.all(clients.slice(0, concurrency).map(async (c, ci) => {
        for (let i = 0; i < perCaller; i++) {
            const s = process.hrtime.bigint();
            await op(c, ci, i);
            lat.push(Number(process.hrtime.bigint() - s) / 1e6);
        }
    }));
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = (cpuTicks() - cpu0) / 100;
    lat.sort((a, b) => a - b);
    const ops = lat.length;
    process.stdout.write(`${JSON.stringify({
        name, concurrency, ops,
        ops_per_s: ops / secs,
        p50_ms: lat[Math.floor(ops * 0.5)],
        p99_ms: lat[Math.min(ops - 1, Math.floor(ops * 0.99))],
        server_cpu_us_per_op: cpu * 1e6 / ops,
    })}\n`);
}

(async () => {
    const clients = await Promise.all(Array.from({ length: 16 }, () => openMetadata(host, port, { callTimeoutMs: 60000 })));
    const value = i => JSON.stringify({ 'content-length': i, 'content-md5': 'd41d8cd98f00b204e9800998ecf8427e', owner: 'x'.repeat(64), tags: {} });
    const sub = c => c.sub(`vbench-${RUN}`);
    const n = Math.round(200 * scale);
    const vids = [];
    await measure('versioned put, 1 key', 1, n, clients, async (c, ci, i) => {
        vids.push(JSON.parse(await sub(c).put('seq', value(i), { versioning: true })).versionId);
    });
    await measure('versioned put, 1 key', 16, Math.round(n / 4), clients, (c, ci, i) =>
        sub(c).put('hot', value(i), { versioning: true }));
    await measure('versioned put, random keys', 16, Math.round(n / 4), clients, (c, ci, i) =>
        sub(c).put(`k${(ci * 7919 + i * 104729) % 997}`, value(i), { versioning: true }));
    await measure('get by versionId', 16, n, clients, (c, ci, i) =>
        sub(c).get('seq', { versionId: vids[(ci * 31 + i) % vids.length] }));
    await measure('metadata update (versionId put)', 16, Math.round(n / 4), clients, (c, ci, i) =>
        sub(c).put('seq', value(-i), { versionId: vids[(ci * 13 + i) % vids.length], isNull: false }));
    // delete the current version then get: the get resolves the PHD by listing
    let cur = 0;
    await measure('delete current version + get (PHD)', 1, Math.min(n, vids.length - 1), clients, async c => {
        await sub(c).del('seq', { versionId: vids[vids.length - 1 - cur] });
        cur += 1;
        await sub(c).get('seq');
    });
    await measure('list all versions of a key', 4, Math.max(2, Math.round(10 * scale)), clients, c =>
        sub(c).list({ gte: 'hot', lt: 'hot\u0001' }));
    clients.forEach(c => c.close());
    process.exit(0);
})().catch(err => {
    process.stderr.write(`versioning-bench: ${err.stack || err}\n`);
    process.exit(1);
});
