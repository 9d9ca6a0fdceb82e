'use strict';
// Assertions for checks, on top of node:assert.
const assert = require('assert');
const { describeError } = require('./runner');

/**
 * Await `promise` and require it to fail with the Arsenal error `name`
 * (err.is[name] === true, as callers such as CloudServer test it) and, if
 * given, the HTTP-style `code`. Resolves with the error.
 */
async function rejectsWithArsenal(promise, name, code) {
    let result;
    try {
        result = await promise;
    } catch (err) {
        if (!err || !err.is || err.is[name] !== true) {
            throw new assert.AssertionError({
                message: `expected Arsenal error ${name}, got ${describeError(err)}`,
            });
        }
        if (code !== undefined && err.code !== code) {
            throw new assert.AssertionError({
                message: `expected ${name} with code ${code}, got code ${err.code}`,
            });
        }
        return err;
    }
    throw new assert.AssertionError({
        message: `expected Arsenal error ${name}, but the call succeeded with ${JSON.stringify(result)}`,
    });
}

/** Require the (data server) error body `{"errorType":type,"errorMessage":...}\n`. */
function assertErrorBody(res, statusCode, errorType) {
    const text = res.body.toString();
    assert.strictEqual(res.statusCode, statusCode, `status (body: ${text})`);
    assert.ok(text.endsWith('\n'), `error body must end with a newline: ${JSON.stringify(text)}`);
    const parsed = JSON.parse(text);
    assert.strictEqual(parsed.errorType, errorType, `errorType in ${text}`);
    assert.strictEqual(typeof parsed.errorMessage, 'string', `errorMessage in ${text}`);
    return parsed;
}

/** Require a statfs-like {available, free, total} object of non-negative integers. */
function assertDiskUsage(usage) {
    assert.ok(usage && typeof usage === 'object', `disk usage is an object: ${JSON.stringify(usage)}`);
    for (const k of ['available', 'free', 'total']) {
        assert.ok(Number.isInteger(usage[k]) && usage[k] >= 0, `disk usage '${k}' is a non-negative integer: ${JSON.stringify(usage)}`);
    }
    assert.ok(usage.total > 0, `total > 0: ${JSON.stringify(usage)}`);
    assert.ok(usage.free <= usage.total && usage.available <= usage.free,
        `available <= free <= total: ${JSON.stringify(usage)}`);
}

module.exports = { assert, rejectsWithArsenal, assertErrorBody, assertDiskUsage };
