#!/usr/bin/env node
'use strict';
// Metadata daemon checks (socket.io RPC on /MDFile/metadata, /MDFile/recordLog),
// driven by Arsenal's MetadataFileClient/LevelDbClient and BucketFileInterface
// (CloudServer's view). Expected values are the reference behaviour
// (tests/arsenal/ref-mdserver.js, spec §2-§5). Every run uses fresh sublevel and
// bucket names, so it can be repeated against a server that keeps its data.
//
//   node metadata-checks.js --target 127.0.0.1:9990 [--expect-uuid UUID]
//                           [--record-log true|false] [--only ...] [--list]
const crypto = require('crypto');
const { suite } = require('./lib/runner');
const { openRecordLog, makeBucketInfo, BucketInfo, sharedMetadata, sharedBucketFile } = require('./lib/clients');
const { assert, rejectsWithArsenal, assertDiskUsage } = require('./lib/expect');

const s = suite('metadata', {
    'expect-uuid': { default: '', help: 'getUUID must return exactly this (e.g. a pre-seeded <path>/uuid)' },
    'record-log': { default: 'true', help: 'whether the server runs the record log (/MDFile/recordLog)' },
});

const RUN = crypto.randomBytes(5).toString('hex');
const SUB = `harness-${RUN}`;
const BUCKET = `harness-bucket-${RUN}`;
const VID_RE = /^\d{14}\d{6}[\s\S]{7}\d*$/; // 14+6+7+counter layout (spec §5.2)

// Keys for the listing checks, in bytewise UTF-8 order ("é" = C3 A9 sorts after "z").
const LIST_KEYS = ['a', 'a\u0000x', 'a\u0001', 'b', 'c', 'z', 'é'];

const md = sharedMetadata;
const bucketFile = sharedBucketFile;

const keysOf = items => items.map(i => i.key);

// --- MetadataFileClient / LevelDbClient -----------------------------------------

s.check('openDB: manifest exposes every metadata method', async ctx => {
    const { db } = await md(ctx);
    for (const m of ['get', 'put', 'del', 'getDiskUsage', 'createReadStream', 'rawListKeys', 'getUUID']) {
        assert.strictEqual(typeof db[m], 'function', `client method '${m}' (from the manifest)`);
    }
});

s.check('getUUID returns the deployment id', async ctx => {
    const uuid = await (await md(ctx)).root.getUUID();
    assert.strictEqual(typeof uuid, 'string');
    if (ctx.opts['expect-uuid']) {
        assert.strictEqual(uuid, ctx.opts['expect-uuid']);
    } else {
        assert.match(uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    }
    assert.strictEqual(await (await md(ctx)).root.getUUID(), uuid, 'stable across calls');
});

s.check('getDiskUsage returns statfs numbers', async ctx => {
    assertDiskUsage(await (await md(ctx)).root.getDiskUsage());
});

s.check('sublevel put/get round-trip (unicode value)', async ctx => {
    const sub = (await md(ctx)).sub(SUB);
    const value = JSON.stringify({ hello: 'world', n: 1, u: 'é😀' });
    assert.strictEqual(await sub.put('k1', value), null, 'plain put acks [null, null]');
    assert.strictEqual(await sub.get('k1'), value);
});

s.check('put overwrites, get sees the last write', async ctx => {
    const sub = (await md(ctx)).sub(SUB);
    await sub.put('k2', 'first');
    await sub.put('k2', 'second');
    assert.strictEqual(await sub.get('k2'), 'second');
});

s.check('get of a missing key -> ObjNotFound', async ctx => {
    const sub = (await md(ctx)).sub(SUB);
    await rejectsWithArsenal(sub.get('no-such-key'), 'ObjNotFound', 404);
});

s.check('sublevels are isolated (same key, other sublevel, nested sublevel)', async ctx => {
    const m = await md(ctx);
    await rejectsWithArsenal(m.sub(`${SUB}-other`).get('k1'), 'ObjNotFound');
    const nested = m.sub(SUB).sub('inner');
    await nested.put('k1', 'nested');
    assert.strictEqual(await nested.get('k1'), 'nested');
    assert.notStrictEqual(await m.sub(SUB).get('k1'), 'nested');
});

s.check('del removes a key; deleting a missing key succeeds', async ctx => {
    const sub = (await md(ctx)).sub(SUB);
    await sub.put('gone', 'x');
    assert.strictEqual(await sub.del('gone'), null);
    await rejectsWithArsenal(sub.get('gone'), 'ObjNotFound');
    assert.strictEqual(await sub.del('never-existed'), null);
});

s.check('createReadStream: prepare listing sublevel', async ctx => {
    const sub = (await md(ctx)).sub(`${SUB}-list`);
    // Write in scrambled order: the server must sort.
    for (const k of ['z', 'a\u0001', 'é', 'a', 'c', 'a\u0000x', 'b']) {
        await sub.put(k, JSON.stringify({ k }));
    }
    ctx.state.listSub = sub;
});

function listSub(ctx) {
    assert.ok(ctx.state.listSub, 'needs "createReadStream: prepare listing sublevel"');
    return ctx.state.listSub;
}

s.check('createReadStream {} lists everything in bytewise order', async ctx => {
    const items = await listSub(ctx).list({});
    assert.deepStrictEqual(keysOf(items), LIST_KEYS);
    assert.deepStrictEqual(items[0], { key: 'a', value: JSON.stringify({ k: 'a' }) });
});

s.check('createReadStream {limit:2}', async ctx => {
    assert.deepStrictEqual(keysOf(await listSub(ctx).list({ limit: 2 })), ['a', 'a\u0000x']);
});

s.check('createReadStream {limit:0} is empty', async ctx => {
    assert.deepStrictEqual(await listSub(ctx).list({ limit: 0 }), []);
});

s.check('createReadStream {reverse:true, limit:3}', async ctx => {
    assert.deepStrictEqual(keysOf(await listSub(ctx).list({ reverse: true, limit: 3 })), ['é', 'z', 'c']);
});

s.check('createReadStream {gt:"a", lt:"c"}', async ctx => {
    assert.deepStrictEqual(keysOf(await listSub(ctx).list({ gt: 'a', lt: 'c' })), ['a\u0000x', 'a\u0001', 'b']);
});

s.check('createReadStream {gte:"a", lte:"c", reverse:true}', async ctx => {
    assert.deepStrictEqual(keysOf(await listSub(ctx).list({ gte: 'a', lte: 'c', reverse: true })),
        ['c', 'b', 'a\u0001', 'a\u0000x', 'a']);
});

s.check('createReadStream {values:false} / {keys:false} give bare strings', async ctx => {
    const keys = await listSub(ctx).list({ gte: 'b', lte: 'c', values: false });
    assert.deepStrictEqual(keys, ['b', 'c']);
    const values = await listSub(ctx).list({ gte: 'b', lte: 'c', keys: false });
    assert.deepStrictEqual(values, [JSON.stringify({ k: 'b' }), JSON.stringify({ k: 'c' })]);
});

s.check('createReadStream of 1200 keys streams all of them in order', async ctx => {
    const sub = (await md(ctx)).sub(`${SUB}-large`);
    const names = Array.from({ length: 1200 }, (_, i) => `obj-${String(i).padStart(5, '0')}`);
    for (let i = 0; i < names.length; i += 100) {
        await Promise.all(names.slice(i, i + 100).map(k => sub.put(k, JSON.stringify({ k }))));
    }
    const items = await sub.list({});
    assert.strictEqual(items.length, names.length);
    assert.deepStrictEqual(keysOf(items), names);
}, { timeoutMs: 60000 });

s.check('createReadStream: early destroy (hangup) then the connection still works', async ctx => {
    const sub = (await md(ctx)).sub(`${SUB}-large`);
    const stream = await sub.readStream({});
    const got = await new Promise((resolve, reject) => {
        const items = [];
        stream.on('data', d => {
            items.push(d);
            if (items.length === 3) {
                stream.destroy();
                resolve(items);
            }
        });
        stream.once('error', reject);
        stream.once('end', () => resolve(items));
    });
    assert.deepStrictEqual(keysOf(got), ['obj-00000', 'obj-00001', 'obj-00002']);
    assert.strictEqual(await (await md(ctx)).sub(SUB).get('k2'), 'second');
});

s.check('rawListKeys shows level-sublevel raw keys', async ctx => {
    const m = await md(ctx);
    const prefix = `!${SUB}#inner!`;
    const raw = await m.root.rawListKeys({ gte: prefix, lt: `${prefix}\uffff` });
    assert.deepStrictEqual(raw, [`${prefix}k1`]);
    const mine = await m.root.rawListKeys({ gte: `!${SUB}!`, lt: `!${SUB}!\uffff` });
    assert.deepStrictEqual(mine, [`!${SUB}!k1`, `!${SUB}!k2`]);
});

s.check('versioning put returns a versionId JSON string', async ctx => {
    const sub = (await md(ctx)).sub(`${SUB}-ver`);
    const res = await sub.put('obj', JSON.stringify({ a: 1 }), { versioning: true });
    assert.strictEqual(typeof res, 'string', 'the ack carries a JSON string, not an object');
    const { versionId } = JSON.parse(res);
    assert.match(versionId, VID_RE);
    assert.ok(versionId.includes('RG001'), `versionId ${JSON.stringify(versionId)} carries the replication group`);
    const master = JSON.parse(await sub.get('obj'));
    assert.deepStrictEqual(master, { a: 1, versionId });
    assert.deepStrictEqual(JSON.parse(await sub.get('obj', { versionId })), { a: 1, versionId });
});

// --- BucketFileInterface (CloudServer's MetadataWrapper('file')) -----------------

s.check('BucketFileInterface setup writes users..bucket attributes', async ctx => {
    const b = await bucketFile(ctx);
    const attrs = await b.getBucketAttributes('users..bucket');
    assert.ok(attrs instanceof BucketInfo);
    assert.strictEqual(attrs.getName(), 'users..bucket');
});

s.check('getBucketAttributes of a missing bucket -> NoSuchBucket', async ctx => {
    const b = await bucketFile(ctx);
    await rejectsWithArsenal(b.getBucketAttributes(`${BUCKET}-missing`), 'NoSuchBucket');
});

s.check('createBucket then getBucketAttributes', async ctx => {
    const b = await bucketFile(ctx);
    const info = makeBucketInfo(BUCKET);
    await b.createBucket(BUCKET, info);
    const got = await b.getBucketAttributes(BUCKET);
    assert.strictEqual(got.getName(), BUCKET);
    assert.strictEqual(got.getOwner(), info.getOwner());
    assert.strictEqual(got.getCreationDate(), info.getCreationDate());
    ctx.state.bucketCreated = true;
});

function needBucket(ctx) {
    assert.ok(ctx.state.bucketCreated, 'needs "createBucket then getBucketAttributes"');
}

s.check('putObject/getObject round-trip', async ctx => {
    needBucket(ctx);
    const b = await bucketFile(ctx);
    const md0 = { 'content-length': 3, 'content-md5': 'abc', 'x-amz-meta-u': 'é😀', location: null };
    const res = await b.putObject(BUCKET, 'dir/obj1', md0, {});
    assert.strictEqual(res, null, 'non-versioned putObject acks null');
    assert.deepStrictEqual(await b.getObject(BUCKET, 'dir/obj1', {}), md0);
});

s.check('getObject of a missing key -> NoSuchKey; of a missing bucket -> NoSuchBucket', async ctx => {
    needBucket(ctx);
    const b = await bucketFile(ctx);
    await rejectsWithArsenal(b.getObject(BUCKET, 'nope', {}), 'NoSuchKey');
    await rejectsWithArsenal(b.getObject(`${BUCKET}-missing`, 'nope', {}), 'NoSuchBucket');
});

s.check('listObject DelimiterMaster with prefix, delimiter and maxKeys', async ctx => {
    needBucket(ctx);
    const b = await bucketFile(ctx);
    for (const k of ['a', 'dir/obj2', 'dir/sub/obj3', 'z']) {
        await b.putObject(BUCKET, k, { key: k }, {});
    }
    const all = await b.listObject(BUCKET, { listingType: 'DelimiterMaster', maxKeys: 1000 });
    assert.deepStrictEqual(all.Contents.map(c => c.key), ['a', 'dir/obj1', 'dir/obj2', 'dir/sub/obj3', 'z']);
    assert.strictEqual(all.IsTruncated, false);

    const delim = await b.listObject(BUCKET, { listingType: 'DelimiterMaster', delimiter: '/', maxKeys: 1000 });
    assert.deepStrictEqual(delim.Contents.map(c => c.key), ['a', 'z']);
    assert.deepStrictEqual(delim.CommonPrefixes, ['dir/']);

    const pre = await b.listObject(BUCKET, { listingType: 'DelimiterMaster', prefix: 'dir/', delimiter: '/', maxKeys: 1000 });
    assert.deepStrictEqual(pre.Contents.map(c => c.key), ['dir/obj1', 'dir/obj2']);
    assert.deepStrictEqual(pre.CommonPrefixes, ['dir/sub/']);

    const page = await b.listObject(BUCKET, { listingType: 'DelimiterMaster', delimiter: '/', maxKeys: 1 });
    assert.deepStrictEqual(page.Contents.map(c => c.key), ['a']);
    assert.strictEqual(page.IsTruncated, true);
    assert.strictEqual(page.NextMarker, 'a');

    const next = await b.listObject(BUCKET, { listingType: 'DelimiterMaster', delimiter: '/', marker: 'a', maxKeys: 1000 });
    assert.deepStrictEqual(next.Contents.map(c => c.key), ['z']);
    assert.deepStrictEqual(next.CommonPrefixes, ['dir/']);
});

s.check('deleteObject then getObject -> NoSuchKey', async ctx => {
    needBucket(ctx);
    const b = await bucketFile(ctx);
    await b.deleteObject(BUCKET, 'dir/obj1', {});
    await rejectsWithArsenal(b.getObject(BUCKET, 'dir/obj1', {}), 'NoSuchKey');
    const list = await b.listObject(BUCKET, { listingType: 'DelimiterMaster', prefix: 'dir/', maxKeys: 1000 });
    assert.deepStrictEqual(list.Contents.map(c => c.key), ['dir/obj2', 'dir/sub/obj3']);
});

s.check('BucketFileInterface getUUID/getDiskUsage', async ctx => {
    const b = await bucketFile(ctx);
    const uuid = await b.getUUID();
    assert.strictEqual(uuid, await (await md(ctx)).root.getUUID());
    assertDiskUsage(await b.getDiskUsage());
});

s.check('deleteBucket then getBucketAttributes -> NoSuchBucket', async ctx => {
    needBucket(ctx);
    const b = await bucketFile(ctx);
    await b.deleteBucket(BUCKET);
    await rejectsWithArsenal(b.getBucketAttributes(BUCKET), 'NoSuchBucket');
});

// --- record log ------------------------------------------------------------------

s.check('record log: readRecords lists this run\'s writes', async ctx => {
    const enabled = !['0', 'false', 'no', 'off'].includes(String(ctx.opts['record-log']).toLowerCase());
    if (!enabled) {
        // The namespace must then be refused (socket.io CONNECT_ERROR).
        await assert.rejects(openRecordLog(ctx.host, ctx.port, { callTimeoutMs: 3000 }));
        return;
    }
    const log = await openRecordLog(ctx.host, ctx.port);
    ctx.cleanup(() => log.close());
    const { info, records } = await log.readRecords({});
    assert.ok(info && Number.isInteger(info.start) && Number.isInteger(info.end), `info ${JSON.stringify(info)}`);
    assert.ok(records.length > 0, 'records were written by the earlier checks');
    assert.strictEqual(info.end - info.start + 1, records.length, `info ${JSON.stringify(info)} vs ${records.length} records`);
    // Record layout: { timestamp, db: <first sublevel name>, entries: [{ type, key, value }] }.
    const mine = records.filter(r => r.db === SUB).map(r => r.entries[0]);
    const k1 = JSON.stringify({ hello: 'world', n: 1, u: 'é😀' });
    assert.ok(mine.some(e => e.type === 'put' && e.key === 'k1' && e.value === k1),
        `a put record for ${SUB}/k1 in ${JSON.stringify(mine.slice(0, 5))}`);
    assert.ok(mine.some(e => e.type === 'del' && e.key === 'gone'), `a del record for ${SUB}/gone`);
    const limited = await log.readRecords({ limit: 2 });
    assert.strictEqual(limited.records.length, 2, 'readRecords {limit:2}');
    assert.deepStrictEqual(limited.info, { start: info.start, end: info.start + 1 });
});

s.run();
