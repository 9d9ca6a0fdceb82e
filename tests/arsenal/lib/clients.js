'use strict';
// Promise wrappers around Arsenal's REAL client code (npm @scality/arsenal 8.5.16):
//
//   data:      RESTClient            (what CloudServer's DataFileInterface uses)
//   metadata:  MetadataFileClient -> LevelDbClient (socket.io RPC, /MDFile/metadata)
//              BucketFileInterface   (what CloudServer's MetadataWrapper('file') uses)
//              RecordLogProxy        (MetadataFileClient.openRecordLog, /MDFile/recordLog)
//
// plus a raw HTTP helper for wire-level data checks. Nothing here re-implements
// protocol logic: every request goes through Arsenal's own code, so a server that
// passes the checks works with CloudServer/Backbeat's client side.
const http = require('http');
const { arsenalModule } = require('./arsenal');

const RESTClient = arsenalModule('network/rest/RESTClient');
const MetadataFileClient = arsenalModule('storage/metadata/file/MetadataFileClient');
const BucketFileInterface = arsenalModule('storage/metadata/file/BucketFileInterface');
const BucketInfo = arsenalModule('models/BucketInfo');
const arsenalErrors = arsenalModule('errors');
const arsenalConstants = require(require('path').join(require('./arsenal').arsenalLibDir, 'constants'));
const werelogs = require('werelogs');

const harnessLogger = new werelogs.Logger('ArsenalHarness');

/** A werelogs request logger, as CloudServer passes to BucketFileInterface. */
function requestLogger() {
    return harnessLogger.newRequestLogger();
}

/** Call `fn(...args, cb)` and resolve with the callback's first result. */
function cbToPromise(fn, thisArg, args) {
    return new Promise((resolve, reject) => {
        fn.call(thisArg, ...args, (err, res) => (err ? reject(err) : resolve(res)));
    });
}

/** Collect a Readable (object or byte mode). Buffers are concatenated, objects listed. */
function collectStream(stream) {
    return new Promise((resolve, reject) => {
        const items = [];
        let byteMode = null;
        stream.on('data', d => {
            if (byteMode === null) {
                byteMode = Buffer.isBuffer(d);
            }
            items.push(d);
        });
        stream.once('error', reject);
        stream.once('end', () => resolve(byteMode ? Buffer.concat(items) : items));
        // RESTClient waits for 'readable' before handing the response over, which
        // leaves it paused: adding a 'data' listener alone would not restart it
        // (CloudServer pipes the response, and pipe() resumes it too).
        stream.resume();
    });
}

// ---------------------------------------------------------------------------
// data: RESTClient

/**
 * Arsenal's RESTClient against host:port, with promise methods.
 *
 *   const d = dataClient('127.0.0.1', 9991);
 *   const key = await d.put(Buffer.from('hello'));
 *   const { body, statusCode, headers } = await d.get(key, [0, 1]);
 *   await d.delete(key); const usage = await d.diskUsage(); d.close();
 *
 * Errors are Arsenal errors rebuilt by RESTClient from the server's JSON body
 * (err.is.ObjNotFound, err.code === 404, err.remote === true, ...).
 */
function dataClient(host, port) {
    const client = new RESTClient({ host, port: Number(port) });
    // CloudServer always passes the request's serialized werelogs uids, which
    // RESTClient sends as X-Scal-Request-Uids; it cannot send an undefined one.
    const uids = reqUids => reqUids || requestLogger().getSerializedUids();
    return {
        client,
        /** PUT a Buffer (or a Readable of `size` bytes); resolves with the new key. */
        put(data, { size, reqUids } = {}) {
            const { Readable } = require('stream');
            const stream = Buffer.isBuffer(data) ? Readable.from([data]) : data;
            const len = size !== undefined ? size : data.length;
            if (Buffer.isBuffer(data) && data.length === 0) {
                // Readable.from([<empty buffer>]) never emits; end the stream explicitly.
                const empty = new Readable({ read() { this.push(null); } });
                return cbToPromise(client.put, client, [empty, 0, uids(reqUids)]);
            }
            return cbToPromise(client.put, client, [stream, len, uids(reqUids)]);
        },
        /**
         * GET, optionally with a [start, end] range as RESTClient takes it (either
         * end may be undefined: [undefined, 5] is "bytes=-5", [5] is "bytes=5-").
         * Resolves with { body: Buffer, statusCode, headers }.
         */
        async get(key, range, { reqUids } = {}) {
            const response = await cbToPromise(client.get, client, [key, range, uids(reqUids)]);
            const body = await collectStream(response);
            return { body: Buffer.isBuffer(body) ? body : Buffer.alloc(0), statusCode: response.statusCode, headers: response.headers };
        },
        delete(key, { reqUids } = {}) {
            return cbToPromise(client.delete, client, [key, uids(reqUids)]);
        },
        /** getAction('diskUsage'), parsed the way DataFileInterface does (JSON.parse). */
        async diskUsage({ reqUids } = {}) {
            const text = await cbToPromise(client.getAction, client, ['diskUsage', uids(reqUids)]);
            return JSON.parse(text);
        },
        close() {
            client.destroy();
        },
    };
}

/**
 * One raw HTTP/1.1 request (no keep-alive), for wire-level checks the JS
 * client cannot express. Resolves with { statusCode, headers, body: Buffer,
 * rawHeaders }. `body` may be a Buffer/string; set `chunked: true` to send it
 * with Transfer-Encoding: chunked (no Content-Length).
 */
function rawRequest(host, port, { method = 'GET', path = '/', headers = {}, body, chunked = false, timeoutMs = 10000 } = {}) {
    return new Promise((resolve, reject) => {
        const h = Object.assign({ connection: 'close' }, headers);
        if (body !== undefined && !chunked && h['content-length'] === undefined && h['Content-Length'] === undefined) {
            h['content-length'] = Buffer.byteLength(body);
        }
        const req = http.request({ host, port: Number(port), method, path, headers: h, agent: false }, res => {
            const chunks = [];
            res.on('data', c => chunks.push(c));
            res.once('error', reject);
            res.once('end', () => resolve({
                statusCode: res.statusCode,
                headers: res.headers,
                rawHeaders: res.rawHeaders,
                body: Buffer.concat(chunks),
            }));
        });
        req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path}: no response after ${timeoutMs} ms`)));
        req.once('error', reject);
        if (chunked) {
            req.setHeader('transfer-encoding', 'chunked');
        }
        if (body !== undefined) {
            req.write(body);
        }
        req.end();
    });
}

// ---------------------------------------------------------------------------
// metadata: MetadataFileClient / LevelDbClient

/**
 * Promise view of one LevelDbClient handle (the root or a sublevel). Every
 * method goes through the client's RPC call, so the server must have listed it
 * in its manifest (a missing method throws "db.<name> is not a function").
 */
class MdHandle {
    constructor(db) {
        this.db = db;
    }

    /** sublevel path sent with each call (e.g. ['bucket']) */
    get path() {
        return this.db.path.slice();
    }

    /** openSub(name): nested sublevel handle. */
    sub(name) {
        return new MdHandle(this.db.openSub(name));
    }

    call(method, ...args) {
        if (typeof this.db[method] !== 'function') {
            return Promise.reject(new TypeError(`metadata client has no method '${method}' (not in the server's manifest?)`));
        }
        return cbToPromise(this.db[method], this.db, args);
    }

    /** Send the werelogs uids of `log` with the next call (as BucketFileInterface does). */
    withRequestLogger(log) {
        this.db.withRequestLogger(log);
        return this;
    }

    put(key, value, options = {}) { return this.call('put', key, value, options); }

    get(key, options = {}) { return this.call('get', key, options); }

    del(key, options = {}) { return this.call('del', key, options); }

    getUUID() { return this.call('getUUID'); }

    getDiskUsage() { return this.call('getDiskUsage'); }

    /** createReadStream(options): resolves with the live object stream. */
    readStream(options = {}) { return this.call('createReadStream', options); }

    /** createReadStream(options) collected into an array of items. */
    async list(options = {}) { return collectStream(await this.readStream(options)); }

    /** rawListKeys(options) collected into an array of raw key strings. */
    async rawListKeys(options = {}) { return collectStream(await this.call('rawListKeys', options)); }
}

/**
 * Connect Arsenal's MetadataFileClient to host:port and open the database
 * (connect + getManifest). Resolves with
 *   { client, root: MdHandle, sub(name), close() }.
 * `callTimeoutMs` defaults to 10 s (CloudServer uses Arsenal's 30 s default) so
 * a silent server fails a check instead of hanging it.
 */
function openMetadata(host, port, { callTimeoutMs = 10000 } = {}) {
    const client = new MetadataFileClient({ host, port: Number(port), callTimeoutMs });
    return new Promise((resolve, reject) => {
        client.openDB((err, db) => {
            if (err) {
                return reject(err);
            }
            if (typeof db.get !== 'function') {
                // openDB calls back even when getManifest failed or timed out.
                db.disconnect();
                return reject(new Error(`metadata server ${host}:${port} did not answer getManifest (no methods on the client)`));
            }
            const root = new MdHandle(db);
            return resolve({
                client,
                db,
                root,
                sub: name => root.sub(name),
                close: () => db.disconnect(),
            });
        });
    });
}

/**
 * MetadataFileClient.openRecordLog({logName}) against host:port. Resolves with
 * { proxy, readRecords(params) -> { info, records: [...] }, close() }.
 */
function openRecordLog(host, port, { logName = 's3-recordlog', callTimeoutMs = 10000 } = {}) {
    const client = new MetadataFileClient({ host, port: Number(port), callTimeoutMs });
    return new Promise((resolve, reject) => {
        client.openRecordLog({ logName }, (err, proxy) => {
            if (err) {
                return reject(err);
            }
            return resolve({
                client,
                proxy,
                async readRecords(params = {}) {
                    const res = await cbToPromise(proxy.readRecords, proxy, [params]);
                    const records = res && res.log ? await collectStream(res.log) : [];
                    return { info: res && res.info, records };
                },
                close: () => proxy.disconnect(),
            });
        });
    });
}

/**
 * BucketFileInterface configured like CloudServer's MetadataWrapper('file'):
 * params { metadataClient: {host, port}, constants: {usersBucket, splitter, ...} }.
 * setup() connects and writes the users..bucket attributes. Promise methods
 * take the same arguments as the callback API minus `log`/`cb` (a fresh
 * request logger is passed for each call).
 */
function openBucketFile(host, port) {
    const bfi = new BucketFileInterface({
        metadataClient: { host, port: Number(port) },
        constants: {
            usersBucket: arsenalConstants.usersBucket,
            splitter: arsenalConstants.splitter,
            mpuBucketPrefix: arsenalConstants.mpuBucketPrefix,
        },
    }, harnessLogger);
    const withLog = name => (...args) => cbToPromise(bfi[name], bfi, [...args, requestLogger()]);
    return new Promise(resolve => bfi.setup(() => resolve({
        bfi,
        createBucket: withLog('createBucket'),
        getBucketAttributes: withLog('getBucketAttributes'),
        putBucketAttributes: withLog('putBucketAttributes'),
        deleteBucket: withLog('deleteBucket'),
        putObject: withLog('putObject'),
        getObject: withLog('getObject'),
        getBucketAndObject: withLog('getBucketAndObject'),
        deleteObject: withLog('deleteObject'),
        listObject: withLog('listObject'),
        listMultipartUploads: withLog('listMultipartUploads'),
        listLifecycleObject: withLog('listLifecycleObject'),
        countItems: withLog('countItems'),
        getUUID: withLog('getUUID'),
        getDiskUsage: () => cbToPromise(bfi.getDiskUsage, bfi, []),
        close: () => bfi.mdDB.disconnect(),
    })));
}

/** A BucketInfo as CloudServer builds it on bucket creation. */
function makeBucketInfo(name, { owner = 'harness-owner-canonical-id', ownerDisplayName = 'harness', versioning } = {}) {
    const info = new BucketInfo(name, owner, ownerDisplayName, new Date().toJSON(),
        BucketInfo.currentModelVersion());
    if (versioning) {
        info.setVersioningConfiguration({ Status: versioning });
    }
    return info;
}

/**
 * One client per suite run, opened on first use and closed by the runner's cleanup: checks in a
 * suite share `ctx.state`, so they share the connection too.
 */
async function sharedClient(ctx, slot, open) {
    if (!ctx.state[slot]) {
        ctx.state[slot] = await open(ctx.host, ctx.port);
        ctx.cleanup(() => ctx.state[slot].close());
    }
    return ctx.state[slot];
}

const sharedMetadata = ctx => sharedClient(ctx, 'md', openMetadata);
const sharedBucketFile = ctx => sharedClient(ctx, 'bfi', openBucketFile);

module.exports = {
    RESTClient,
    MetadataFileClient,
    BucketFileInterface,
    BucketInfo,
    arsenalErrors,
    arsenalConstants,
    requestLogger,
    cbToPromise,
    collectStream,
    dataClient,
    rawRequest,
    MdHandle,
    openMetadata,
    openRecordLog,
    openBucketFile,
    makeBucketInfo,
    sharedMetadata,
    sharedBucketFile,
};
