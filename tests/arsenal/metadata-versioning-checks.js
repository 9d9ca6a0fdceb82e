#!/usr/bin/env node
'use strict';
// Versioning checks (spec §5 and its Appendix B walk-through), driven by Arsenal's
// own clients: BucketFileInterface the way CloudServer uses it for versioned
// buckets (versioned puts, DelimiterVersions / DelimiterMaster listings, deletes of
// the current version, delete markers, null versions after suspending versioning,
// version-specific gets and metadata updates), and MetadataFileClient for the exact
// key/value contents (value surgery, PHD text, repairs). Expected values are the
// reference behaviour; every check must pass against ref-mdserver.js first.
//
//   node metadata-versioning-checks.js --target 127.0.0.1:9990 [--rg RG001]
//                                      [--repair-wait-ms 16000] [--only ...]
const crypto = require('crypto');
const { suite } = require('./lib/runner');
const { makeBucketInfo, sharedMetadata, sharedBucketFile } = require('./lib/clients');
const { assert, rejectsWithArsenal } = require('./lib/expect');

const s = suite('metadata-versioning', {
    rg: { default: 'RG001', help: 'replication group id the server was started with' },
    'repair-wait-ms': { default: '16000', help: 'wait for the delayed PHD repair (reference: 15 s); 0 skips that check' },
});

const RUN = crypto.randomBytes(5).toString('hex');
const SUB = `vharness-${RUN}`;
const BUCKET = `vbucket-${RUN}`;
const INF = rg => `99999999999999999999${`${rg}       `.slice(0, 7)}`;
const PHD_RE = /^\{ "isPHD": true, "versionId": "(\d{20}.{7}\d+)" \}$/;

function vidRe(rg) {
    const padded = `${rg}       `.slice(0, 7).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    return new RegExp(`^\\d{14}\\d{6}${padded}\\d+$`);
}

const md = sharedMetadata;
const bucketFile = sharedBucketFile;

/** Every key/value of a sublevel, as {key: value}, in listing order (keys joined for order checks). */
async function dump(sub) {
    const items = await sub.list({});
    return { keys: items.map(i => i.key), map: Object.fromEntries(items.map(i => [i.key, i.value])) };
}

const vidOf = res => {
    assert.strictEqual(typeof res, 'string', `a versioning call acks a JSON string, got ${JSON.stringify(res)}`);
    return JSON.parse(res).versionId;
};

const sleep = ms => new Promise(r => setTimeout(r, ms));

/** Poll `fn` until it returns truthy or `ms` elapse; resolves with the last result. */
async function eventually(fn, ms = 3000) {
    const end = Date.now() + ms;
    let last;
    while (Date.now() < end) {
        last = await fn();
        if (last) {
            return last;
        }
        await sleep(50);
    }
    return last;
}

// --- the Appendix B walk-through, on a raw sublevel ----------------------------------

s.check('walk-through: non-versioned put, null version save, two versioned puts', async ctx => {
    const rg = ctx.opts.rg;
    const sub = (await md(ctx)).sub(`${SUB}-walk`);
    assert.strictEqual(await sub.put('obj', '{"a":0}', {}), null);
    const nullMd = `{"a":0,"versionId":"${INF(rg)}","isNull":true,"isNull2":true}`;
    assert.strictEqual(vidOf(await sub.put('obj', nullMd, { versionId: 'null' })), 'null');
    const v1 = vidOf(await sub.put('obj', '{"a":1}', { versioning: true }));
    const v2 = vidOf(await sub.put('obj', '{"a":2}', { versioning: true }));
    assert.match(v1, vidRe(rg));
    assert.match(v2, vidRe(rg));
    assert.ok(v2 < v1, `newer ids sort first: ${v1} then ${v2}`);
    assert.ok(Number(v2.slice(27)) > Number(v1.slice(27)), `the counter grows: ${v1} then ${v2}`);
    const d = await dump(sub);
    assert.deepStrictEqual(d.keys, ['obj', 'obj\0', `obj\0${v2}`, `obj\0${v1}`]);
    assert.strictEqual(d.map.obj, `{"a":2,"versionId":"${v2}"}`);
    assert.strictEqual(d.map['obj\0'], nullMd);
    assert.strictEqual(d.map[`obj\0${v1}`], `{"a":1,"versionId":"${v1}"}`);
    ctx.state.walk = { sub, v1, v2, nullMd };
});

function walk(ctx) {
    assert.ok(ctx.state.walk, 'needs the first walk-through check');
    return ctx.state.walk;
}

s.check('walk-through: metadata update of an older version, then of the latest', async ctx => {
    const { sub, v1, v2 } = walk(ctx);
    const a1 = `{"a":1,"tag":"x","versionId":"${v1}"}`;
    assert.strictEqual(vidOf(await sub.put('obj', a1, { versionId: v1 })), v1);
    let d = await dump(sub);
    assert.strictEqual(d.map.obj, `{"a":2,"versionId":"${v2}"}`, 'master unchanged by an older version update');
    assert.strictEqual(d.map[`obj\0${v1}`], a1);
    const a2 = `{"a":2,"tag":"y","versionId":"${v2}"}`;
    assert.strictEqual(vidOf(await sub.put('obj', a2, { versionId: v2 })), v2);
    d = await dump(sub);
    assert.strictEqual(d.map.obj, a2, 'master follows an update of the latest version');
    assert.strictEqual(d.map[`obj\0${v2}`], a2);
    assert.deepStrictEqual(d.keys, ['obj', 'obj\0', `obj\0${v2}`, `obj\0${v1}`]);
});

s.check('walk-through: deleting the current version leaves the exact PHD; get resolves and repairs it', async ctx => {
    const { sub, v1, v2 } = walk(ctx);
    assert.strictEqual(vidOf(await sub.del('obj', { versionId: v2 })), v2);
    let d = await dump(sub);
    assert.deepStrictEqual(d.keys, ['obj', 'obj\0', `obj\0${v1}`]);
    assert.match(d.map.obj, PHD_RE);
    const a1 = `{"a":1,"tag":"x","versionId":"${v1}"}`;
    assert.strictEqual(await sub.get('obj'), a1, 'get of a PHD master answers the newest version');
    d = await eventually(async () => {
        const x = await dump(sub);
        return x.map.obj === a1 ? x : null;
    });
    assert.ok(d, 'the get repairs the master');
    assert.deepStrictEqual(d.keys, ['obj', 'obj\0', `obj\0${v1}`]);
});

s.check('walk-through: the null version becomes current, then nothing is left', async ctx => {
    const rg = ctx.opts.rg;
    const { sub, v1, nullMd } = walk(ctx);
    assert.strictEqual(vidOf(await sub.del('obj', { versionId: v1 })), v1);
    let d = await dump(sub);
    assert.deepStrictEqual(d.keys, ['obj', 'obj\0']);
    assert.match(d.map.obj, PHD_RE);
    assert.strictEqual(await sub.get('obj'), nullMd, 'the null key, sorted by its real id, is the newest version');
    d = await eventually(async () => {
        const x = await dump(sub);
        return x.keys.length === 1 ? x : null;
    });
    assert.ok(d, 'the repair moves the null key into the master');
    assert.strictEqual(d.map.obj, nullMd);
    await rejectsWithArsenal(sub.get('obj', { versionId: 'null' }), 'ObjNotFound');
    assert.strictEqual(vidOf(await sub.del('obj', { versionId: INF(rg) })), INF(rg));
    d = await dump(sub);
    assert.deepStrictEqual(d.keys, ['obj']);
    assert.match(d.map.obj, PHD_RE);
    await rejectsWithArsenal(sub.get('obj'), 'ObjNotFound');
    d = await eventually(async () => {
        const x = await dump(sub);
        return x.keys.length === 0 ? x : null;
    });
    assert.ok(d, 'a PHD with no version left is deleted by the repair');
});

// --- exact value surgery ----------------------------------------------------------------

s.check('versioning put splices versionId into the JSON text (no parsing)', async ctx => {
    const sub = (await md(ctx)).sub(`${SUB}-text`);
    const cases = [
        ['{}', vid => `{"versionId":"${vid}"}`],
        ['{  }', vid => `{  "versionId":"${vid}"}`],
        ['{"x":1 }', vid => `{"x":1 ,"versionId":"${vid}"}`],
        ['{"versionId":"old"}', vid => `{"versionId":"old","versionId":"${vid}"}`],
        ['{"u":"é😀","n":1.50}', vid => `{"u":"é😀","n":1.50,"versionId":"${vid}"}`],
    ];
    for (const [i, [value, expected]] of cases.entries()) {
        const vid = vidOf(await sub.put(`k${i}`, value, { versioning: true }));
        assert.strictEqual(await sub.get(`k${i}`), expected(vid), `master of ${value}`);
        assert.strictEqual(await sub.get(`k${i}`, { versionId: vid }), expected(vid), `version of ${value}`);
    }
});

s.check('versionId "" (suspended): new id on the master only; deleteNullKey drops the null key', async ctx => {
    const sub = (await md(ctx)).sub(`${SUB}-susp`);
    await sub.put('o', '{"n":0}', { versionId: 'null' });
    const vid = vidOf(await sub.put('o', '{"s":1,"isNull":true}', { versionId: '', isNull: true }));
    assert.match(vid, vidRe(ctx.opts.rg));
    let d = await dump(sub);
    assert.deepStrictEqual(d.keys, ['o', 'o\0'], 'no version key is written');
    assert.strictEqual(d.map.o, `{"s":1,"isNull":true,"versionId":"${vid}"}`);
    const vid2 = vidOf(await sub.put('o', '{"s":2}', { versionId: '', isNull: true, deleteNullKey: true }));
    d = await dump(sub);
    assert.deepStrictEqual(d.keys, ['o']);
    assert.strictEqual(d.map.o, `{"s":2,"versionId":"${vid2}"}`);
});

s.check('version-specific put on a non-versioned master (legacy, no isNull) keeps it as the "infinite" null version', async ctx => {
    const rg = ctx.opts.rg;
    const sub = (await md(ctx)).sub(`${SUB}-legacy`);
    // JSON that JSON.parse + JSON.stringify rewrites: spaces, number formats, index-like keys
    await sub.put('o', '{"b":1, "a":[1.50,2e21,1e-7,0.000001,-0], "7":"x", "u":"\\u00e9\\n"}', {});
    const vid = '00000000000000999999RG001  0'; // newer than the master's infinite id
    assert.strictEqual(vidOf(await sub.put('o', '{"upd":1}', { versionId: vid })), vid);
    const d = await dump(sub);
    assert.deepStrictEqual(d.keys, ['o', `o\0${vid}`, `o\0${INF(rg)}`]);
    assert.strictEqual(d.map[`o\0${INF(rg)}`],
        `{"7":"x","b":1,"a":[1.5,2e+21,1e-7,0.000001,0],"u":"é\\n","versionId":"${INF(rg)}","isNull":true}`);
    assert.strictEqual(d.map.o, `{"upd":1,"nullVersionId":"${INF(rg)}"}`);
    assert.strictEqual(d.map[`o\0${vid}`], '{"upd":1}');
});

s.check('version-specific put with isNull:false on a non-versioned master writes the null key (isNull2)', async ctx => {
    const rg = ctx.opts.rg;
    const sub = (await md(ctx)).sub(`${SUB}-isnull`);
    await sub.put('o', '{"z":1,"2":"two","a":-0}', {});
    const fake = '00000000000000000000XXXXXXX0'; // newer than anything
    assert.strictEqual(vidOf(await sub.put('o', '{"v":1}', { versionId: fake, isNull: false })), fake);
    const d = await dump(sub);
    assert.deepStrictEqual(d.keys, ['o', 'o\0', `o\0${fake}`]);
    assert.strictEqual(d.map['o\0'], `{"2":"two","z":1,"a":0,"versionId":"${INF(rg)}","isNull":true,"isNull2":true}`);
    assert.strictEqual(d.map.o, '{"v":1}');
});

s.check('version-specific put older than the master with isNull:true becomes the null key', async ctx => {
    const sub = (await md(ctx)).sub(`${SUB}-older`);
    const v1 = vidOf(await sub.put('o', '{"a":1}', { versioning: true }));
    const v2 = vidOf(await sub.put('o', '{"a":2}', { versioning: true }));
    assert.strictEqual(vidOf(await sub.put('o', `{"a":1,"isNull":true,"versionId":"${v1}"}`, { versionId: v1, isNull: true })), v1);
    const d = await dump(sub);
    assert.deepStrictEqual(d.keys, ['o', 'o\0', `o\0${v2}`]);
    assert.strictEqual(d.map['o\0'], `{"a":1,"isNull":true,"versionId":"${v1}"}`);
    assert.strictEqual(d.map.o, `{"a":2,"versionId":"${v2}"}`);
});

s.check('version-specific put on a missing master creates it; delete of a missing version acks its id', async ctx => {
    const sub = (await md(ctx)).sub(`${SUB}-missing`);
    const vid = '98000000000000999999RG001  7';
    assert.strictEqual(vidOf(await sub.put('o', '{"x":1}', { versionId: vid })), vid);
    let d = await dump(sub);
    assert.deepStrictEqual(d.keys, ['o', `o\0${vid}`]);
    assert.strictEqual(d.map.o, '{"x":1}');
    assert.strictEqual(vidOf(await sub.del('nothing', { versionId: vid })), vid);
    assert.strictEqual(vidOf(await sub.del('nothing', { versionId: 'null' })), 'null');
    assert.strictEqual(await sub.del('nothing', {}), null);
    d = await dump(sub);
    assert.deepStrictEqual(d.keys, ['o', `o\0${vid}`], 'deletes of missing keys write nothing visible');
});

s.check('get with versionId: exact version, "null" reads the null key only, missing -> ObjNotFound', async ctx => {
    const sub = (await md(ctx)).sub(`${SUB}-vget`);
    await sub.put('o', '{"nul":1}', { versionId: 'null' });
    const v = vidOf(await sub.put('o', '{"a":1}', { versioning: true }));
    assert.strictEqual(await sub.get('o', { versionId: 'null' }), '{"nul":1}');
    assert.strictEqual(await sub.get('o', { versionId: v }), `{"a":1,"versionId":"${v}"}`);
    await rejectsWithArsenal(sub.get('o', { versionId: '97000000000000999999RG001  1' }), 'ObjNotFound');
    await rejectsWithArsenal(sub.get('other', { versionId: v }), 'ObjNotFound');
});

s.check('a versioning put of a non-string value fails with the reference\'s plain error', async ctx => {
    const sub = (await md(ctx)).sub(`${SUB}-bad`);
    let err;
    try {
        await sub.put('o', { a: 1 }, { versioning: true });
    } catch (e) {
        err = e;
    }
    assert.ok(err, 'the put must fail');
    assert.strictEqual(err.message, 'stringifiedObject.charAt is not a function');
    assert.strictEqual(err.is_arsenal_error, undefined, 'a plain error, not an Arsenal error');
    await rejectsWithArsenal(sub.get('o'), 'ObjNotFound');
});

s.check('a PHD master with only older versions: concurrent gets all answer the newest', async ctx => {
    const sub = (await md(ctx)).sub(`${SUB}-phdget`);
    const vids = [];
    for (let i = 0; i < 4; i++) {
        vids.push(vidOf(await sub.put('o', `{"i":${i}}`, { versioning: true })));
    }
    await sub.del('o', { versionId: vids[3] });
    const answers = await Promise.all([1, 2, 3, 4, 5, 6].map(() => sub.get('o')));
    for (const a of answers) {
        assert.strictEqual(a, `{"i":2,"versionId":"${vids[2]}"}`);
    }
    const d = await eventually(async () => {
        const x = await dump(sub);
        return x.map.o === `{"i":2,"versionId":"${vids[2]}"}` ? x : null;
    });
    assert.ok(d, 'repaired');
    assert.deepStrictEqual(d.keys, ['o', `o\0${vids[2]}`, `o\0${vids[1]}`, `o\0${vids[0]}`]);
});

s.check('delayed repair: a deleted current version is repaired without any read', async ctx => {
    const wait = Number(ctx.opts['repair-wait-ms']);
    assert.ok(wait > 0, 'this check needs --repair-wait-ms > 0');
    const sub = (await md(ctx)).sub(`${SUB}-timer`);
    const v1 = vidOf(await sub.put('o', '{"a":1}', { versioning: true }));
    const v2 = vidOf(await sub.put('o', '{"a":2}', { versioning: true }));
    await sub.del('o', { versionId: v2 });
    let d = await dump(sub);
    assert.match(d.map.o, PHD_RE);
    await sleep(wait);
    d = await dump(sub);
    assert.strictEqual(d.map.o, `{"a":1,"versionId":"${v1}"}`, 'the master was repaired by the 15 s timer');
}, { timeoutMs: 60000 });

// --- BucketFileInterface, as CloudServer drives a versioned bucket ----------------------

s.check('BFI: create a versioned bucket', async ctx => {
    const b = await bucketFile(ctx);
    await b.createBucket(BUCKET, makeBucketInfo(BUCKET, { versioning: 'Enabled' }));
    const info = await b.getBucketAttributes(BUCKET);
    assert.strictEqual(info.getVersioningConfiguration().Status, 'Enabled');
    ctx.state.bucket = true;
});

function needBucket(ctx) {
    assert.ok(ctx.state.bucket, 'needs "BFI: create a versioned bucket"');
}

const mdOf = (key, n, extra = {}) => Object.assign({ key, 'content-length': n, 'content-md5': `md5-${n}`, 'x-amz-meta-n': String(n) }, extra);

s.check('BFI: versioned puts, latest via getObject, each version via versionId', async ctx => {
    needBucket(ctx);
    const b = await bucketFile(ctx);
    const vids = [];
    for (let n = 1; n <= 3; n++) {
        vids.push(vidOf(await b.putObject(BUCKET, 'photo.jpg', mdOf('photo.jpg', n), { versioning: true })));
    }
    assert.ok(vids[2] < vids[1] && vids[1] < vids[0], `ids decrease: ${vids}`);
    assert.deepStrictEqual(await b.getObject(BUCKET, 'photo.jpg', {}), mdOf('photo.jpg', 3, { versionId: vids[2] }));
    for (let n = 1; n <= 3; n++) {
        assert.deepStrictEqual(await b.getObject(BUCKET, 'photo.jpg', { versionId: vids[n - 1] }),
            mdOf('photo.jpg', n, { versionId: vids[n - 1] }));
    }
    for (const k of ['a/1', 'a/2', 'b']) {
        await b.putObject(BUCKET, k, mdOf(k, 0), { versioning: true });
    }
    ctx.state.photo = vids;
});

s.check('BFI: DelimiterVersions lists every version newest first; DelimiterMaster the latest', async ctx => {
    needBucket(ctx);
    const vids = ctx.state.photo;
    assert.ok(vids, 'needs the versioned puts');
    const b = await bucketFile(ctx);
    const res = await b.listObject(BUCKET, { listingType: 'DelimiterVersions', maxKeys: 1000 });
    const photo = res.Versions.filter(v => v.key === 'photo.jpg');
    assert.deepStrictEqual(photo.map(v => v.versionId), [vids[2], vids[1], vids[0]]);
    assert.deepStrictEqual(JSON.parse(photo[0].value), mdOf('photo.jpg', 3, { versionId: vids[2] }));
    assert.deepStrictEqual(res.Versions.map(v => v.key), ['a/1', 'a/2', 'b', 'photo.jpg', 'photo.jpg', 'photo.jpg']);
    const delim = await b.listObject(BUCKET, { listingType: 'DelimiterVersions', delimiter: '/', maxKeys: 1000 });
    assert.deepStrictEqual(delim.CommonPrefixes, ['a/']);
    assert.deepStrictEqual(delim.Versions.map(v => v.key), ['b', 'photo.jpg', 'photo.jpg', 'photo.jpg']);
    const page = await b.listObject(BUCKET, { listingType: 'DelimiterVersions', maxKeys: 4 });
    assert.strictEqual(page.IsTruncated, true);
    assert.strictEqual(page.NextKeyMarker, 'photo.jpg');
    assert.strictEqual(page.NextVersionIdMarker, vids[2]);
    const rest = await b.listObject(BUCKET, {
        listingType: 'DelimiterVersions', maxKeys: 1000, keyMarker: 'photo.jpg', versionIdMarker: vids[2],
    });
    assert.deepStrictEqual(rest.Versions.map(v => v.versionId), [vids[1], vids[0]]);
    const master = await b.listObject(BUCKET, { listingType: 'DelimiterMaster', maxKeys: 1000 });
    assert.deepStrictEqual(master.Contents.map(c => c.key), ['a/1', 'a/2', 'b', 'photo.jpg']);
    assert.deepStrictEqual(JSON.parse(master.Contents[3].value), mdOf('photo.jpg', 3, { versionId: vids[2] }));
});

s.check('BFI: deleting the current version makes the previous one current (get and listings)', async ctx => {
    needBucket(ctx);
    const vids = ctx.state.photo;
    assert.ok(vids, 'needs the versioned puts');
    const b = await bucketFile(ctx);
    assert.strictEqual(await b.deleteObject(BUCKET, 'photo.jpg', { versionId: vids[2] }), undefined, 'deleteObject calls back with no result');
    // listings right after the delete (the master is a PHD until repaired)
    const master = await b.listObject(BUCKET, { listingType: 'DelimiterMaster', maxKeys: 1000 });
    const photo = master.Contents.find(c => c.key === 'photo.jpg');
    assert.ok(photo, 'photo.jpg is still listed');
    assert.strictEqual(JSON.parse(photo.value).versionId, vids[1]);
    const versions = await b.listObject(BUCKET, { listingType: 'DelimiterVersions', prefix: 'photo', maxKeys: 1000 });
    assert.deepStrictEqual(versions.Versions.map(v => v.versionId), [vids[1], vids[0]]);
    assert.deepStrictEqual(await b.getObject(BUCKET, 'photo.jpg', {}), mdOf('photo.jpg', 2, { versionId: vids[1] }));
    await rejectsWithArsenal(b.getObject(BUCKET, 'photo.jpg', { versionId: vids[2] }), 'NoSuchKey');
});

s.check('BFI: a delete marker hides the object from DelimiterMaster and heads DelimiterVersions', async ctx => {
    needBucket(ctx);
    const vids = ctx.state.photo;
    assert.ok(vids, 'needs the versioned puts');
    const b = await bucketFile(ctx);
    const dm = { key: 'photo.jpg', isDeleteMarker: true, 'content-length': 0 };
    const dmVid = vidOf(await b.putObject(BUCKET, 'photo.jpg', dm, { versioning: true }));
    const master = await b.listObject(BUCKET, { listingType: 'DelimiterMaster', maxKeys: 1000 });
    assert.deepStrictEqual(master.Contents.map(c => c.key), ['a/1', 'a/2', 'b']);
    const versions = await b.listObject(BUCKET, { listingType: 'DelimiterVersions', prefix: 'photo', maxKeys: 1000 });
    assert.deepStrictEqual(versions.Versions.map(v => v.versionId), [dmVid, vids[1], vids[0]]);
    assert.strictEqual(JSON.parse(versions.Versions[0].value).isDeleteMarker, true);
    // deleting the marker (a version-specific delete) brings the object back
    assert.strictEqual(await b.deleteObject(BUCKET, 'photo.jpg', { versionId: dmVid }), undefined, 'deleteObject calls back with no result');
    assert.deepStrictEqual(await b.getObject(BUCKET, 'photo.jpg', {}), mdOf('photo.jpg', 2, { versionId: vids[1] }));
    const again = await b.listObject(BUCKET, { listingType: 'DelimiterMaster', maxKeys: 1000 });
    assert.deepStrictEqual(again.Contents.map(c => c.key), ['a/1', 'a/2', 'b', 'photo.jpg']);
});

s.check('BFI: null versions — non-versioned object, versioning enabled, then suspended', async ctx => {
    needBucket(ctx);
    const rg = ctx.opts.rg;
    const b = await bucketFile(ctx);
    const key = 'doc.txt';
    // 1. put before versioning was enabled: a plain put
    assert.strictEqual(await b.putObject(BUCKET, key, mdOf(key, 0), {}), null);
    // 2. versioning enabled: CloudServer first saves the non-versioned master as the null version
    const nullMd = mdOf(key, 0, { versionId: INF(rg), isNull: true, isNull2: true });
    assert.strictEqual(vidOf(await b.putObject(BUCKET, key, nullMd, { versionId: 'null' })), 'null');
    const v1 = vidOf(await b.putObject(BUCKET, key, mdOf(key, 1, { nullVersionId: INF(rg) }), { versioning: true }));
    let versions = await b.listObject(BUCKET, { listingType: 'DelimiterVersions', prefix: key, maxKeys: 1000 });
    assert.deepStrictEqual(versions.Versions.map(v => v.versionId), [v1, INF(rg)]);
    assert.deepStrictEqual(await b.getObject(BUCKET, key, { versionId: 'null' }), nullMd);
    // 3. versioning suspended: the new put replaces the null version (CloudServer: versionId '', isNull)
    const s1 = vidOf(await b.putObject(BUCKET, key, mdOf(key, 2, { isNull: true }),
        { versionId: '', isNull: true, deleteNullKey: true }));
    assert.deepStrictEqual(await b.getObject(BUCKET, key, {}), mdOf(key, 2, { isNull: true, versionId: s1 }));
    await rejectsWithArsenal(b.getObject(BUCKET, key, { versionId: 'null' }), 'NoSuchKey');
    versions = await b.listObject(BUCKET, { listingType: 'DelimiterVersions', prefix: key, maxKeys: 1000 });
    assert.deepStrictEqual(versions.Versions.map(v => v.versionId), [s1, v1]);
    // 4. metadata update of the null master (e.g. tagging): version-specific put with isNull
    const tagged = mdOf(key, 2, { isNull: true, versionId: s1, tags: { t: 'v' } });
    assert.strictEqual(vidOf(await b.putObject(BUCKET, key, tagged, { versionId: s1, isNull: true })), s1);
    assert.deepStrictEqual(await b.getObject(BUCKET, key, {}), tagged);
    // 5. re-enable versioning and put: the null master is saved as the null key first
    const nullMd2 = Object.assign({}, tagged, { isNull2: true });
    await b.putObject(BUCKET, key, nullMd2, { versionId: 'null' });
    const v3 = vidOf(await b.putObject(BUCKET, key, mdOf(key, 3, { nullVersionId: s1 }), { versioning: true }));
    versions = await b.listObject(BUCKET, { listingType: 'DelimiterVersions', prefix: key, maxKeys: 1000 });
    assert.deepStrictEqual(versions.Versions.map(v => v.versionId), [v3, s1, v1]);
    // 6. delete the null version by its id (CloudServer passes isNull for null keys)
    assert.strictEqual(await b.deleteObject(BUCKET, key, { versionId: s1, isNull: true }), undefined, 'deleteObject calls back with no result');
    versions = await b.listObject(BUCKET, { listingType: 'DelimiterVersions', prefix: key, maxKeys: 1000 });
    assert.deepStrictEqual(versions.Versions.map(v => v.versionId), [v3, v1]);
    assert.deepStrictEqual(await b.getObject(BUCKET, key, {}), mdOf(key, 3, { nullVersionId: s1, versionId: v3 }));
});

s.check('BFI: metadata update of a non-current version leaves the current one', async ctx => {
    needBucket(ctx);
    const b = await bucketFile(ctx);
    const key = 'tags.txt';
    const v1 = vidOf(await b.putObject(BUCKET, key, mdOf(key, 1), { versioning: true }));
    const v2 = vidOf(await b.putObject(BUCKET, key, mdOf(key, 2), { versioning: true }));
    const upd = mdOf(key, 1, { versionId: v1, tags: { a: 'b' } });
    assert.strictEqual(vidOf(await b.putObject(BUCKET, key, upd, { versionId: v1, isNull: false })), v1);
    assert.deepStrictEqual(await b.getObject(BUCKET, key, { versionId: v1 }), upd);
    assert.deepStrictEqual(await b.getObject(BUCKET, key, {}), mdOf(key, 2, { versionId: v2 }));
    const cur = mdOf(key, 2, { versionId: v2, tags: { c: 'd' } });
    await b.putObject(BUCKET, key, cur, { versionId: v2, isNull: false });
    assert.deepStrictEqual(await b.getObject(BUCKET, key, {}), cur);
});

s.check('BFI: countItems counts version keys', async ctx => {
    needBucket(ctx);
    const b = await bucketFile(ctx);
    const res = await b.countItems();
    // Version keys (containing \0) count as versions; this run alone wrote more than 10.
    assert.ok(res.versions >= 10, `versions counted: ${JSON.stringify(res)}`);
    assert.ok(res.objects >= 6, `masters counted as objects: ${JSON.stringify(res)}`);
});

s.run();
