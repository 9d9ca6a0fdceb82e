'use strict';
// One place that knows where Arsenal's modules live inside the npm package.
// The harness requires Arsenal's build/lib modules directly instead of the
// package index, because the index loads every backend (AWS, Azure, MongoDB,
// ...) whose dependencies are replaced by standins/unneeded to keep the
// install lean (see README.md).
const path = require('path');

const ARSENAL_VERSION = '8.5.16';
const root = path.dirname(require.resolve('@scality/arsenal/package.json'));
const lib = path.join(root, 'build', 'lib');

const installed = require('@scality/arsenal/package.json').version;
if (installed !== ARSENAL_VERSION) {
    throw new Error(`tests/arsenal expects @scality/arsenal ${ARSENAL_VERSION}, found ${installed}: run scripts/deps/arsenal.sh`);
}

/** require() a module of Arsenal's build tree, e.g. arsenalModule('network/rest/RESTClient'). */
function arsenalModule(rel) {
    const m = require(path.join(lib, rel));
    return m && m.__esModule && m.default ? m.default : m;
}

module.exports = { ARSENAL_VERSION, arsenalModule, arsenalLibDir: lib };
