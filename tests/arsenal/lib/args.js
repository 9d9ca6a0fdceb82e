'use strict';
// Minimal "--name value" / "--flag" command-line parser shared by the harness
// scripts (no dependency). Unknown options are an error so typos do not silently
// fall back to defaults.

/**
 * @param {string[]} argv - process.argv.slice(2)
 * @param {Object} spec - { name: { default, flag: bool, help } }
 * @param {string} usage - one-line usage text printed on errors
 * @return {Object} option values keyed by name
 */
function parseArgs(argv, spec, usage) {
    const out = {};
    for (const [name, s] of Object.entries(spec)) {
        out[name] = s.flag ? false : s.default;
    }
    const fail = msg => {
        process.stderr.write(`${msg}\nusage: ${usage}\n`);
        process.exit(2);
    };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === '-h' || a === '--help') {
            process.stdout.write(`usage: ${usage}\n`);
            for (const [name, s] of Object.entries(spec)) {
                const def = s.flag ? '' : ` (default: ${s.default === undefined ? 'required' : JSON.stringify(s.default)})`;
                process.stdout.write(`  --${name}${s.flag ? '' : ' VALUE'}  ${s.help || ''}${def}\n`);
            }
            process.exit(0);
        }
        if (!a.startsWith('--')) {
            fail(`unexpected argument '${a}'`);
        }
        let name = a.slice(2);
        let value;
        const eq = name.indexOf('=');
        if (eq !== -1) {
            value = name.slice(eq + 1);
            name = name.slice(0, eq);
        }
        const s = spec[name];
        if (!s) {
            fail(`unknown option '--${name}'`);
        }
        if (s.flag) {
            out[name] = value === undefined ? true : !['0', 'false', 'no'].includes(value);
            continue;
        }
        if (value === undefined) {
            if (i + 1 >= argv.length) {
                fail(`option '--${name}' needs a value`);
            }
            value = argv[++i];
        }
        out[name] = value;
    }
    for (const [name, s] of Object.entries(spec)) {
        if (!s.flag && out[name] === undefined) {
            fail(`option '--${name}' is required`);
        }
    }
    return out;
}

/** Parse a TCP port (0 = let the OS pick a free one). */
function parsePort(value, what) {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0 || n > 65535) {
        process.stderr.write(`${what}: invalid port '${value}'\n`);
        process.exit(2);
    }
    return n;
}

module.exports = { parseArgs, parsePort };
