'use strict';
// Stand-in for werelogs (scality/werelogs#8.2.4, GitHub-only, not installable here).
// Implements the surface that Arsenal 8.5.16's file data/metadata code paths touch:
// werelogs.configure(), new Logger(name), logger.newRequestLogger([uids]),
// logger.newRequestLoggerFromSerializedUids(str), and on both kinds of logger
// trace/debug/info/warn/error/fatal (+ `warning`, which Arsenal's
// storage/data/file/utils.js calls by mistake), end(), addDefaultFields(),
// getUids(), getSerializedUids(). Serialized uids use werelogs' ':' separator.
//
// Output: one JSON line on stderr per entry at or above the level given by the
// environment variable ARSENAL_HARNESS_LOG (trace|debug|info|warn|error|fatal|off;
// default "error"), so test output stays quiet but real errors are visible.
const crypto = require('crypto');

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
const SEP = ':';

function thresholdFromEnv() {
    const v = (process.env.ARSENAL_HARNESS_LOG || 'error').toLowerCase();
    if (v === 'off' || v === 'none') {
        return LEVELS.length;
    }
    const i = LEVELS.indexOf(v);
    return i === -1 ? LEVELS.indexOf('error') : i;
}

let threshold = thresholdFromEnv();

function newUid() {
    return crypto.randomBytes(10).toString('hex');
}

function emit(level, name, uids, defaults, msg, data) {
    if (LEVELS.indexOf(level) < threshold) {
        return;
    }
    const entry = Object.assign({ time: Date.now(), level, name }, defaults);
    if (uids) {
        entry.req_id = uids.join(SEP);
    }
    entry.message = typeof msg === 'string' ? msg : String(msg);
    if (data && typeof data === 'object') {
        for (const [k, v] of Object.entries(data)) {
            entry[k] = v instanceof Error ? { message: v.message, stack: v.stack } : v;
        }
    }
    let line;
    try {
        line = JSON.stringify(entry);
    } catch (e) {
        line = JSON.stringify({ level, name, message: entry.message, note: 'unserializable fields' });
    }
    process.stderr.write(`${line}\n`);
}

class RequestLogger {
    constructor(name, uids, defaults) {
        this.name = name;
        this.uids = uids;
        this.defaults = Object.assign({}, defaults);
        this.startTime = Date.now();
    }

    getUids() {
        return this.uids.slice();
    }

    getSerializedUids() {
        return this.uids.join(SEP);
    }

    addDefaultFields(fields) {
        const old = this.defaults;
        this.defaults = Object.assign({}, old, fields);
        return old;
    }

    end(msg, data) {
        // werelogs' end() returns the logger so `log.end().error(...)` works;
        // called without a message it only marks the end of the request.
        if (msg !== undefined) {
            this.info(msg, data);
        }
        return this;
    }

    errorEnd(msg, data) {
        this.error(msg, data);
        return this;
    }
}

for (const level of LEVELS) {
    RequestLogger.prototype[level] = function log(msg, data) {
        emit(level, this.name, this.uids, this.defaults, msg, data);
    };
}
RequestLogger.prototype.warning = RequestLogger.prototype.warn;

class Logger {
    constructor(name) {
        this.name = name;
        this.defaults = {};
    }

    newRequestLogger(uids) {
        let list;
        if (Array.isArray(uids)) {
            list = uids.concat([newUid()]);
        } else if (typeof uids === 'string' && uids.length > 0) {
            list = [uids, newUid()];
        } else {
            list = [newUid()];
        }
        return new RequestLogger(this.name, list, this.defaults);
    }

    newRequestLoggerFromSerializedUids(serializedUids) {
        const prev = typeof serializedUids === 'string' && serializedUids.length > 0
            ? serializedUids.split(SEP) : [];
        return new RequestLogger(this.name, prev.concat([newUid()]), this.defaults);
    }

    addDefaultFields(fields) {
        const old = this.defaults;
        this.defaults = Object.assign({}, old, fields);
        return old;
    }
}

for (const level of LEVELS) {
    Logger.prototype[level] = function log(msg, data) {
        emit(level, this.name, null, this.defaults, msg, data);
    };
}
Logger.prototype.warning = Logger.prototype.warn;

function configure(config) {
    // Arsenal's RESTServer calls configure({level, dump}); the environment
    // variable wins so tests control verbosity in one place.
    if (!process.env.ARSENAL_HARNESS_LOG && config && typeof config.level === 'string') {
        const i = LEVELS.indexOf(config.level);
        if (i !== -1) {
            threshold = Math.max(i, LEVELS.indexOf('error'));
        }
    }
}

module.exports = { Logger, RequestLogger, configure, API: { Logger, configure } };
module.exports.default = module.exports;
