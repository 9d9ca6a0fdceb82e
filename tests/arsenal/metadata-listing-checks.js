#!/usr/bin/env node
'use strict';
// Listing checks for the metadata daemon, through Arsenal's own clients:
//  - MetadataFileClient createReadStream with every combination of lower bound (none, gt, gte,
//    min, start/end legacy aliases), upper bound (none, lt, lte, max), reverse, limit (absent,
//    -1, 0, 2) and item shape (key+value, keys:false, values:false), compared with a model of
//    LevelUP/level-sublevel semantics: bytewise UTF-8 order, default bounds gte "\0" and
//    lte "\uFFFF" (spec §4.4 quirk);
//  - rawListKeys options over raw keys;
//  - BucketFileInterface.listObject (DelimiterMaster, what CloudServer's GET Bucket uses) with
//    prefix, delimiter, marker and maxKeys, compared with an S3 model and paged to the end;
//  - countItems (which parses rawListKeys);
//  - record log readRecords with startSeq/endSeq/limit combinations, against a model of the
//    reference's rules (spec §4.7, endSeq <= 0 quirk included).
//
//   node metadata-listing-checks.js --target 127.0.0.1:9990
const crypto = require('crypto');
const { suite } = require('./lib/runner');
const { openMetadata, openBucketFile, openRecordLog, makeBucketInfo } = require('./lib/clients');
const { assert } = require('./lib/expect');

const s = suite('metadata-listing');
const RUN = crypto.randomBytes(5).toString('hex');
const SUB = `listing-${RUN}`;
const BUCKET = `listing-bucket-${RUN}`;

// Keys around every boundary the spec names: NUL and \x01 after a prefix, "é" (C3 A9) after
// "z", U+FFFE/U+FFFF at the default upper bound, and an emoji above it (F0 9F ...).
const KEYS = ['a', 'a\u0000x', 'a\u0001', 'a/', 'ab', 'b', 'c', 'z', 'é', '\uFFFE', '\uFFFF', '\uFFFFx', '😀', '😀x'];
const cmp = (x, y) => Buffer.compare(Buffer.from(x, 'utf8'), Buffer.from(y, 'utf8'));
const value = k => JSON.stringify({ k });

async function md(ctx) {
    if (!ctx.state.md) {
        ctx.state.md = await openMetadata(ctx.host, ctx.port);
        ctx.cleanup(() => ctx.state.md.close());
    }
    return ctx.state.md;
}

/** The model: which keys a read stream returns for `opts` (spec §4.4). */
function model(opts) {
    const first = (...names) => names.find(n => opts[n] !== undefined);
    const lowName = first('gt', 'gte', 'min');
    const highName = first('lt', 'lte', 'max');
    let low = lowName ? { v: opts[lowName], excl: lowName === 'gt' } : null;
    let high = highName ? { v: opts[highName], excl: highName === 'lt' } : null;
    const legacyLow = opts.reverse ? opts.end : opts.start;
    const legacyHigh = opts.reverse ? opts.start : opts.end;
    if (!low && legacyLow !== undefined) {
        low = { v: legacyLow, excl: false };
    }
    if (!high && legacyHigh !== undefined) {
        high = { v: legacyHigh, excl: false };
    }
    low = low || { v: '\u0000', excl: false };
    high = high || { v: '\uFFFF', excl: false };
    let keys = KEYS.concat(['']).sort(cmp).filter(k => {
        const l = cmp(k, low.v);
        const h = cmp(k, high.v);
        return (low.excl ? l > 0 : l >= 0) && (high.excl ? h < 0 : h <= 0);
    });
    if (opts.reverse) {
        keys.reverse();
    }
    if (opts.limit !== undefined && opts.limit >= 0) {
        keys = keys.slice(0, opts.limit);
    }
    if (opts.keys === false && opts.values === false) {
        return [];
    }
    if (opts.keys === false) {
        return keys.map(value);
    }
    if (opts.values === false) {
        return keys;
    }
    return keys.map(k => ({ key: k, value: value(k) }));
}

s.check('prepare: keys around every ordering boundary (scrambled writes)', async ctx => {
    const sub = (await md(ctx)).sub(SUB);
    const scrambled = KEYS.slice().sort(() => Math.random() - 0.5);
    for (const k of scrambled) {
        await sub.put(k, value(k));
    }
    // The empty key is stored but outside the default bounds (gte "\0").
    await sub.put('', value(''));
    assert.strictEqual(await sub.get(''), value(''));
    assert.strictEqual(await sub.get('😀'), value('😀'), 'keys above U+FFFF are stored and readable');
    ctx.state.ready = true;
});

const LOWERS = [{}, { gt: 'a' }, { gte: 'a\u0001' }, { min: 'b' }, { gt: 'é' }, { gte: '' }];
const UPPERS = [{}, { lt: 'z' }, { lte: 'c' }, { max: '\uFFFE' }, { lt: '😀' }, { lte: '\uFFFF' }];
const REVERSES = [{}, { reverse: true }];
const LIMITS = [{}, { limit: -1 }, { limit: 0 }, { limit: 2 }];
const SHAPES = [{}, { keys: false }, { values: false }];

for (const lo of LOWERS) {
    for (const hi of UPPERS) {
        s.check(`createReadStream ${JSON.stringify({ ...lo, ...hi })} x reverse x limit x keys/values`, async ctx => {
            assert.ok(ctx.state.ready, 'needs the prepare check');
            const sub = (await md(ctx)).sub(SUB);
            const bad = [];
            for (const r of REVERSES) {
                for (const l of LIMITS) {
                    for (const sh of SHAPES) {
                        const opts = { ...lo, ...hi, ...r, ...l, ...sh };
                        const got = await sub.list(opts);
                        const want = model(opts);
                        try {
                            assert.deepStrictEqual(got, want);
                        } catch (e) {
                            bad.push(`${JSON.stringify(opts)}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
                        }
                    }
                }
            }
            assert.ok(bad.length === 0, `${bad.length} combination(s) differ:\n  ${bad.join('\n  ')}`);
        });
    }
}

s.check('createReadStream legacy start/end aliases, forward and reverse', async ctx => {
    assert.ok(ctx.state.ready, 'needs the prepare check');
    const sub = (await md(ctx)).sub(SUB);
    const cases = [
        { start: 'b', end: 'c' }, { start: 'b', end: 'c', reverse: true },
        { start: 'c', end: 'b', reverse: true }, { start: 'a/' }, { end: 'a/' },
        { start: 'a/', reverse: true }, { gt: 'a', start: 'z' }, { lte: 'b', end: 'z' },
    ];
    for (const opts of cases) {
        assert.deepStrictEqual(await sub.list({ ...opts, values: false }), model({ ...opts, values: false }),
            JSON.stringify(opts));
    }
});

s.check('rawListKeys: options apply to raw keys, no default bounds', async ctx => {
    assert.ok(ctx.state.ready, 'needs the prepare check');
    const m = await md(ctx);
    const p = `!${SUB}!`;
    const all = KEYS.concat(['']).map(k => p + k).sort(cmp);
    // `p + "\uFFFF\uFFFF"` is above every key of the sublevel except the emoji ones.
    assert.deepStrictEqual(await m.root.rawListKeys({ gte: p, lt: `!${SUB}"` }), all,
        'the whole sublevel, empty key and emoji included');
    assert.deepStrictEqual(await m.root.rawListKeys({ gte: p, lt: `!${SUB}"`, reverse: true, limit: 3 }),
        all.slice().reverse().slice(0, 3));
    assert.deepStrictEqual(await m.root.rawListKeys({ gt: `${p}a`, lte: `${p}b`, limit: 2 }), [`${p}a\u0000x`, `${p}a\u0001`]);
    assert.deepStrictEqual(await m.root.rawListKeys({ gt: `${p}a`, lt: `${p}a`, limit: 2 }), []);
});

// --- BucketFileInterface listings -------------------------------------------------

const OBJECTS = [
    'a', 'b/1', 'b/2', 'b/c/1', 'b/c/2', 'b/d', 'c', 'd/', 'd/e', 'é/1', 'f-1', 'f-2', 'f/1',
    'g', 'g/h/i/j', 'z', 'z/1', 'zz',
];

/** S3 ListObjects (v1) over OBJECTS: returns the ordered entries (keys and common prefixes). */
function s3Entries({ prefix = '', delimiter, marker }) {
    const out = [];
    for (const k of OBJECTS.slice().sort(cmp)) {
        if (!k.startsWith(prefix) || (marker !== undefined && cmp(k, marker) <= 0)) {
            continue;
        }
        if (delimiter) {
            const i = k.indexOf(delimiter, prefix.length);
            if (i >= 0) {
                const cp = k.slice(0, i + delimiter.length);
                if (!out.some(e => e.cp === cp) && !(marker !== undefined && cmp(cp, marker) <= 0)) {
                    out.push({ cp });
                }
                continue;
            }
        }
        out.push({ key: k });
    }
    return out;
}

function entriesOf(res) {
    // Arsenal returns Contents and CommonPrefixes separately; both are in key order.
    return res.Contents.map(c => ({ key: c.key })).concat((res.CommonPrefixes || []).map(cp => ({ cp })))
        .sort((x, y) => cmp(x.key || x.cp, y.key || y.cp));
}

s.check('BucketFileInterface: create a bucket of objects', async ctx => {
    const b = await openBucketFile(ctx.host, ctx.port);
    ctx.state.bfi = b;
    ctx.cleanup(() => b.close());
    await b.createBucket(BUCKET, makeBucketInfo(BUCKET));
    for (const k of OBJECTS.slice().reverse()) {
        await b.putObject(BUCKET, k, { key: k, 'content-length': k.length }, {});
    }
    ctx.state.bucket = true;
});

const PARAMS = [];
for (const prefix of [undefined, 'b/', 'b/c', 'f', 'é/', 'nope']) {
    for (const delimiter of [undefined, '/', '-']) {
        for (const marker of [undefined, 'b/1', 'b/', 'f-1', 'g/h']) {
            PARAMS.push({ prefix, delimiter, marker });
        }
    }
}

s.check(`listObject DelimiterMaster: ${PARAMS.length} prefix/delimiter/marker combinations, maxKeys 1000`, async ctx => {
    assert.ok(ctx.state.bucket, 'needs the bucket');
    const b = ctx.state.bfi;
    const bad = [];
    for (const p of PARAMS) {
        const params = { listingType: 'DelimiterMaster', maxKeys: 1000 };
        for (const [k, v] of Object.entries(p)) {
            if (v !== undefined) {
                params[k] = v;
            }
        }
        const res = await b.listObject(BUCKET, params);
        const got = entriesOf(res);
        const want = s3Entries(p);
        if (JSON.stringify(got) !== JSON.stringify(want) || res.IsTruncated !== false) {
            bad.push(`${JSON.stringify(p)}: got ${JSON.stringify(got)} truncated=${res.IsTruncated}, want ${JSON.stringify(want)}`);
        }
    }
    assert.ok(bad.length === 0, `${bad.length} listing(s) differ:\n  ${bad.join('\n  ')}`);
});

s.check('listObject DelimiterMaster: paging with maxKeys 1, 2, 5 and NextMarker reaches every entry', async ctx => {
    assert.ok(ctx.state.bucket, 'needs the bucket');
    const b = ctx.state.bfi;
    for (const maxKeys of [1, 2, 5]) {
        for (const p of [{}, { delimiter: '/' }, { prefix: 'b/', delimiter: '/' }, { prefix: 'g' }]) {
            const seen = [];
            let marker;
            for (let page = 0; page < 50; page++) {
                const params = { listingType: 'DelimiterMaster', maxKeys, ...p };
                if (marker !== undefined) {
                    params.marker = marker;
                }
                const res = await b.listObject(BUCKET, params);
                const entries = entriesOf(res);
                assert.ok(entries.length <= maxKeys, `page larger than maxKeys ${maxKeys}`);
                seen.push(...entries);
                if (!res.IsTruncated) {
                    marker = null;
                    break;
                }
                // S3 v1: NextMarker only comes with a delimiter; otherwise the last key is the
                // next marker (what CloudServer's clients do).
                marker = p.delimiter ? res.NextMarker : entries[entries.length - 1].key;
                assert.ok(marker, `a truncated page has a next marker (${JSON.stringify(p)})`);
            }
            assert.strictEqual(marker, null, 'the listing ends');
            assert.deepStrictEqual(seen, s3Entries(p), `pages of ${maxKeys} for ${JSON.stringify(p)}`);
        }
    }
});

s.check('countItems sees the bucket and its objects', async ctx => {
    assert.ok(ctx.state.bucket, 'needs the bucket');
    const res = await ctx.state.bfi.countItems();
    assert.ok(res && typeof res.objects === 'number' && res.objects >= OBJECTS.length, JSON.stringify(res));
    assert.ok(res.buckets >= 0, JSON.stringify(res));
});

// --- record log ---------------------------------------------------------------------

/** readRecords' range rules (spec §4.7) over the sequence numbers `all` (ascending). */
function recordsModel(all, { startSeq, endSeq, limit }) {
    let end = all.length ? all[all.length - 1] : 0;
    let unbounded = false;
    if (endSeq !== undefined) {
        if (endSeq <= 0) {
            end = 0;
            unbounded = true;
        } else {
            end = Math.min(end, endSeq);
        }
    }
    const from = startSeq || 0;
    const first = all.find(s => s >= from && (unbounded || s <= end));
    if (first === undefined) {
        return { info: { start: null, end: null }, seqs: [] };
    }
    if (limit && first + limit <= end) {
        end = first + limit - 1;
    }
    let seqs = all.filter(s => s >= first && (unbounded || s <= end));
    if (limit) {
        seqs = seqs.slice(0, limit);
    }
    return { info: { start: first, end }, seqs };
}

s.check('record log: readRecords startSeq/endSeq/limit combinations', async ctx => {
    assert.ok(ctx.state.bucket, 'needs the writes of the earlier checks');
    const log = await openRecordLog(ctx.host, ctx.port);
    ctx.cleanup(() => log.close());
    const everything = await log.readRecords({});
    const all = [];
    for (let s = everything.info.start; s <= everything.info.end; s++) {
        all.push(s);
    }
    assert.strictEqual(all.length, everything.records.length, 'no gaps in a fresh log');
    assert.ok(all.length > 20, `enough records (${all.length})`);
    const byKey = new Map(all.map((seq, i) => [seq, JSON.stringify(everything.records[i])]));
    const last = all[all.length - 1];
    const bad = [];
    for (const startSeq of [undefined, 0, 1, 5, last, last + 1]) {
        for (const endSeq of [undefined, -1, 0, 3, 10, last, last + 5]) {
            for (const limit of [undefined, 1, 4, 1000]) {
                const params = {};
                for (const [k, v] of Object.entries({ startSeq, endSeq, limit })) {
                    if (v !== undefined) {
                        params[k] = v;
                    }
                }
                const got = await log.readRecords(params);
                const want = recordsModel(all, params);
                const gotRecs = got.records.map(r => JSON.stringify(r));
                const wantRecs = want.seqs.map(s => byKey.get(s));
                // Member order is not part of the protocol: compare info as objects.
                const sameInfo = got.info && got.info.start === want.info.start && got.info.end === want.info.end;
                if (!sameInfo || JSON.stringify(gotRecs) !== JSON.stringify(wantRecs)) {
                    bad.push(`${JSON.stringify(params)}: got info ${JSON.stringify(got.info)} and ${gotRecs.length} records, `
                        + `want ${JSON.stringify(want.info)} and ${want.seqs.length} (${want.seqs.slice(0, 3)}...)`);
                }
            }
        }
    }
    assert.ok(bad.length === 0, `${bad.length} readRecords call(s) differ:\n  ${bad.join('\n  ')}`);
}, { timeoutMs: 60000 });

s.run();
