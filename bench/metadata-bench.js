#!/usr/bin/env node
'use strict';
// Drives one metadata server with Arsenal's own MetadataFileClient (the client CloudServer
// uses) and prints one JSON line per workload: ops/s, p50/p99 latency, and the server's CPU
// time per operation read from /proc/<pid>/stat. Run by bench/metadata.sh, which starts our
// server and Arsenal's reference side by side.
//
//   node bench/metadata-bench.js --target 127.0.0.1:9990 --pid PID --label NAME [--scale 1]
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const harness = path.join(__dirname, '..', 'tests', 'arsenal');
const { openMetadata } = require(path.join(harness, 'lib', 'clients'));

function arg(name, def) {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : def;
}
const [host, port] = arg('target').split(':');
const pid = Number(arg('pid'));
const label = arg('label', 'server');
const scale = Number(arg('scale', '1'));
const TICK = 100; // USER_HZ

function cpuSeconds() {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICK;
}

const VALUE = JSON.stringify({
    'owner-display-name': 'bench', 'owner-id': 'a'.repeat(64), 'content-length': 1024,
    'content-md5': 'd41d8cd98f00b204e9800998ecf8427e', 'x-amz-storage-class': 'STANDARD',
    location: [{ key: 'b'.repeat(40), size: 1024, start: 0, dataStoreName: 'us-east-1', dataStoreType: 'file' }],
    'last-modified': new Date().toISOString(), 'x-amz-meta-bench': 'x'.repeat(120),
});

async function measure(name, total, concurrency, op) {
    const lat = [];
    let next = 0;
    const cpu0 = cpuSeconds();
    const client0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    async function worker() {
        while (next < total) {
            const i = next++;
            const s = process.hrtime.bigint();
            await op(i);
            lat.push(Number(process.hrtime.bigint() - s) / 1e6);
        }
    }
    await Promise.all(Array.from({ length: concurrency }, worker));
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = cpuSeconds() - cpu0;
    const client = process.cpuUsage(client0);
    lat.sort((a, b) => a - b);
    const pct = p => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))];
    const out = {
        label, name, concurrency, ops: total,
        ops_per_s: total / secs, p50_ms: pct(0.5), p99_ms: pct(0.99),
        server_cpu_us_per_op: (cpu * 1e6) / total,
        client_cpu_us_per_op: (client.user + client.system) / total,
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
}

async function main() {
    const md = await openMetadata(host, port, { callTimeoutMs: 60000 });
    const run = crypto.randomBytes(4).toString('hex');
    const sub = md.sub(`bench-${run}`);
    const list = md.sub(`bench-list-${run}`);
    // 1,000 keys to list, plus keys around them so the range is bounded like a prefix listing.
    for (let i = 0; i < 1000; i += 50) {
        await Promise.all(Array.from({ length: 50 }, (_, j) => list.put(`dir/obj-${String(i + j).padStart(6, '0')}`, VALUE)));
    }
    await Promise.all(['a', 'e', 'z'].map(k => list.put(k, VALUE)));
    const listOnce = async () => {
        const items = await list.list({ gte: 'dir/', lt: 'dir0' });
        if (items.length !== 1000) {
            throw new Error(`listing returned ${items.length} items`);
        }
    };
    const n = x => Math.max(1, Math.round(x * scale));
    await measure('put', n(1000), 1, i => sub.put(`seq-${i}`, VALUE));
    await measure('put', n(4000), 16, i => sub.put(`c16-${i}`, VALUE));
    await measure('get', n(5000), 1, i => sub.get(`seq-${i % n(1000)}`));
    await measure('get', n(20000), 16, i => sub.get(`c16-${i % n(4000)}`));
    await measure('list1000', n(100), 1, listOnce);
    await measure('list1000', n(200), 16, listOnce);
    md.close();
}

main().catch(err => {
    process.stderr.write(`metadata-bench: ${err.stack || err}\n`);
    process.exit(1);
});
