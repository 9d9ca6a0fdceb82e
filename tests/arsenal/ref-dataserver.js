#!/usr/bin/env node
'use strict';
// Arsenal's own data daemon, as CloudServer's dataserver.js starts it:
// RESTServer (HTTP, service /DataFile) over DataFileStore.
//
//   node ref-dataserver.js --dataPath DIR [--port 0] [--bindAddress 127.0.0.1]
//                          [--noSync] [--noCache]
//
// Prints exactly one line "READY <port>" on stdout once listening (port 0 = a
// free port chosen by the OS, reported here), and exits 0 on SIGTERM/SIGINT.
// Logs go to stderr (ARSENAL_HARNESS_LOG=debug|info|warn|error, default error).
const fs = require('fs');
const { parseArgs, parsePort } = require('./lib/args');
const { arsenalModule } = require('./lib/arsenal');
const { announceReady, stopOnSignals } = require('./lib/lifecycle');

const USAGE = 'ref-dataserver.js --dataPath DIR [--port N] [--bindAddress ADDR] [--noSync] [--noCache]';
const opts = parseArgs(process.argv.slice(2), {
    dataPath: { help: 'directory holding the objects (created if missing)' },
    port: { default: '9991', help: 'TCP port, 0 = any free port' },
    bindAddress: { default: '127.0.0.1', help: 'address to listen on' },
    noSync: { flag: true, help: 'do not fsync object files (S3DATA_NOSYNC)' },
    noCache: { flag: true, help: 'drop page cache after I/O (S3DATA_NOCACHE)' },
}, USAGE);
const port = parsePort(opts.port, 'ref-dataserver');

const RESTServer = arsenalModule('network/rest/RESTServer');
const DataFileStore = arsenalModule('storage/data/file/DataFileStore');

fs.mkdirSync(opts.dataPath, { recursive: true });
const log = { logLevel: 'info', dumpLevel: 'error' };
const dataServer = new RESTServer({
    bindAddress: opts.bindAddress,
    // RESTServer asserts a truthy port; 0 is set just below.
    port: port || 1,
    dataStore: new DataFileStore({
        dataPath: opts.dataPath,
        log,
        noSync: opts.noSync,
        noCache: opts.noCache,
    }),
    log,
});
dataServer.setPort(port);
dataServer.onListening(() => {
    // eslint-disable-next-line no-underscore-dangle
    announceReady(dataServer._server.address().port);
});
dataServer.onError(err => {
    process.stderr.write(`ref-dataserver: server error: ${err.stack || err}\n`);
    process.exit(1);
});

stopOnSignals('ref-dataserver', () => {
    dataServer.onStop(() => process.exit(0));
    dataServer.stop();
    // Keep-alive clients may hold sockets open; do not wait for them.
    setTimeout(() => process.exit(0), 1000).unref();
});

dataServer.setup(err => {
    if (err) {
        process.stderr.write(`ref-dataserver: setup of ${opts.dataPath} failed: ${err.stack || err}\n`);
        process.exit(1);
    }
    dataServer.start();
});
