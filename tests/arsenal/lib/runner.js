'use strict';
// Tiny check runner shared by every *-checks.js script.
//
//   const { suite } = require('./lib/runner');
//   const s = suite('data', { target: true });      // parses --target host:port
//   s.check('put then get', async ctx => { ... });  // ctx = { host, port, opts, state }
//   s.run();
//
// Output contract (parsed by tests/common/arsenal.rs and by CI log readers):
//   PASS <name> (<ms> ms)
//   FAIL <name> (<ms> ms): <message>         (indented detail lines may follow)
//   ...
//   N passed, M failed                       (last line, alone)
// Exit code: 0 when M == 0 and N > 0, 1 otherwise (2 for usage errors).
//
// Checks run sequentially in declaration order and share `ctx.state`, so a
// later check may use what an earlier one created; a check that needs an
// earlier result must fail (not skip) when it is missing. Each check has a
// timeout (default 20 s, `--timeout-ms`), so a server that never answers
// fails the check instead of hanging the run.
// Options every suite accepts: --target host:port, --only SUBSTRING (run the
// checks whose name contains it; may be repeated with commas), --list,
// --timeout-ms N, --verbose (print the error stack on failure).
const { parseArgs } = require('./args');

function parseTarget(value, what) {
    const m = /^(.+):(\d+)$/.exec(value || '');
    if (!m) {
        process.stderr.write(`${what}: --target must be host:port, got '${value}'\n`);
        process.exit(2);
    }
    return { host: m[1].replace(/^\[(.*)\]$/, '$1'), port: Number(m[2]) };
}

function describeError(err) {
    if (!err) {
        return String(err);
    }
    if (err instanceof Error || typeof err === 'object') {
        const parts = [];
        if (err.constructor && err.constructor.name && err.constructor.name !== 'Error') {
            parts.push(err.constructor.name);
        }
        if (err.type) {
            parts.push(`type=${err.type}`);
        }
        if (err.code !== undefined) {
            parts.push(`code=${err.code}`);
        }
        const msg = err.message || (err.description ? err.description : JSON.stringify(err));
        return `${msg}${parts.length ? ` [${parts.join(' ')}]` : ''}`;
    }
    return String(err);
}

/**
 * @param {string} name - suite name (used in messages)
 * @param {Object} [extraOptions] - more parseArgs() options for this suite
 */
function suite(name, extraOptions = {}) {
    const checks = [];
    const cleanups = [];
    const spec = Object.assign({
        target: { help: 'server to check, host:port' },
        only: { default: '', help: 'comma-separated substrings: run only matching checks' },
        list: { flag: true, help: 'list check names and exit' },
        'timeout-ms': { default: '20000', help: 'per-check timeout' },
        verbose: { flag: true, help: 'print stacks of failures' },
    }, extraOptions);
    const usage = `node ${name}-checks.js --target host:port [--only a,b] [--list] [--timeout-ms N] [--verbose]`;

    const self = {
        /** Register a check: fn(ctx) returns a promise; throwing/rejecting fails it. */
        check(checkName, fn, { timeoutMs } = {}) {
            if (checks.some(c => c.name === checkName)) {
                throw new Error(`duplicate check name '${checkName}'`);
            }
            checks.push({ name: checkName, fn, timeoutMs });
            return self;
        },
        /** Register a cleanup (e.g. closing clients) run after all checks, even on failure. */
        cleanup(fn) {
            cleanups.push(fn);
            return self;
        },
        async run(argv = process.argv.slice(2)) {
            if (argv.includes('--list')) {
                checks.forEach(c => process.stdout.write(`${c.name}\n`));
                process.exit(0);
            }
            const opts = parseArgs(argv, spec, usage);
            const { host, port } = parseTarget(opts.target, name);
            const defaultTimeout = Number(opts['timeout-ms']);
            const filters = opts.only ? opts.only.split(',').map(s => s.trim()).filter(Boolean) : [];
            const selected = filters.length
                ? checks.filter(c => filters.some(f => c.name.includes(f)))
                : checks;
            if (selected.length === 0) {
                process.stderr.write(`${name}: no check matches --only '${opts.only}'\n`);
            }
            const ctx = { host, port, opts, state: {}, cleanup: fn => cleanups.push(fn) };
            let passed = 0;
            let failed = 0;
            for (const c of selected) {
                const start = Date.now();
                const limit = c.timeoutMs || defaultTimeout;
                let timer;
                try {
                    await Promise.race([
                        Promise.resolve().then(() => c.fn(ctx)),
                        new Promise((_, reject) => {
                            timer = setTimeout(() => reject(new Error(`timed out after ${limit} ms`)), limit);
                        }),
                    ]);
                    passed += 1;
                    process.stdout.write(`PASS ${c.name} (${Date.now() - start} ms)\n`);
                } catch (err) {
                    failed += 1;
                    process.stdout.write(`FAIL ${c.name} (${Date.now() - start} ms): ${describeError(err)}\n`);
                    if (opts.verbose && err && err.stack) {
                        process.stdout.write(`${err.stack.split('\n').map(l => `    ${l}`).join('\n')}\n`);
                    }
                } finally {
                    clearTimeout(timer);
                }
            }
            for (const fn of cleanups.reverse()) {
                try {
                    await fn();
                } catch (err) {
                    process.stderr.write(`${name}: cleanup failed: ${describeError(err)}\n`);
                }
            }
            process.stdout.write(`${passed} passed, ${failed} failed\n`);
            // Clients (socket.io, keep-alive agents) may keep the loop alive.
            process.exit(failed === 0 && passed > 0 ? 0 : 1);
        },
    };
    return self;
}

module.exports = { suite, parseTarget, describeError };
