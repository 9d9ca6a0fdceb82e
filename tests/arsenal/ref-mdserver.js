#!/usr/bin/env node
'use strict';
// Arsenal's own metadata daemon, as CloudServer's mdserver.js starts it:
// MetadataFileServer (socket.io RPC, namespaces /MDFile/metadata and, with the
// record log, /MDFile/recordLog) over LevelDB in <path>/rootDB.
//
//   node ref-mdserver.js --path DIR [--port 0] [--bindAddress 127.0.0.1]
//                        [--replicationGroupId RG001] [--recordLog true|false]
//                        [--recordLogName s3-recordlog]
//
// Defaults follow CloudServer's shipped config.json: replicationGroupId RG001,
// recordLog enabled with the name "s3-recordlog".
// Prints exactly one line "READY <port>" on stdout once listening (port 0 = a
// free port chosen by the OS, reported here), and exits 0 on SIGTERM/SIGINT
// after closing LevelDB.
const fs = require('fs');
const { parseArgs, parsePort } = require('./lib/args');
const { arsenalModule } = require('./lib/arsenal');
const { announceReady, stopOnSignals } = require('./lib/lifecycle');

const USAGE = 'ref-mdserver.js --path DIR [--port N] [--bindAddress ADDR] '
    + '[--replicationGroupId RG] [--recordLog true|false] [--recordLogName NAME]';
const opts = parseArgs(process.argv.slice(2), {
    path: { help: 'metadata directory (created if missing): rootDB/ and uuid' },
    port: { default: '9990', help: 'TCP port, 0 = any free port' },
    bindAddress: { default: '127.0.0.1', help: 'address to listen on' },
    replicationGroupId: { default: 'RG001', help: 'versioning replication group id' },
    recordLog: { default: 'true', help: 'enable the record log service' },
    recordLogName: { default: 's3-recordlog', help: 'record log name' },
}, USAGE);
const port = parsePort(opts.port, 'ref-mdserver');
const recordLogEnabled = !['0', 'false', 'no', 'off'].includes(String(opts.recordLog).toLowerCase());

const MetadataFileServer = arsenalModule('storage/metadata/file/MetadataFileServer');

fs.mkdirSync(opts.path, { recursive: true });
const mdServer = new MetadataFileServer({
    bindAddress: opts.bindAddress,
    port,
    path: opts.path,
    restEnabled: false,
    versioning: { replicationGroupId: opts.replicationGroupId },
    recordLog: { enabled: recordLogEnabled, recordLogName: opts.recordLogName },
    log: { logLevel: 'info', dumpLevel: 'error' },
});
mdServer.startServer();

// MetadataFileServer keeps its http.Server inside the socket.io server it creates.
const httpServer = mdServer.server.httpServer;
const announce = () => announceReady(httpServer.address().port);
if (httpServer.listening) {
    announce();
} else {
    httpServer.once('listening', announce);
}
httpServer.on('error', err => {
    process.stderr.write(`ref-mdserver: server error: ${err.stack || err}\n`);
    process.exit(1);
});

stopOnSignals('ref-mdserver', () => {
    const hardStop = setTimeout(() => process.exit(0), 2000);
    hardStop.unref();
    // Close socket.io (disconnects clients, closes the http server), then LevelDB
    // so its lock file and log are released cleanly.
    mdServer.server.close(() => {
        mdServer.baseDb.close(err => {
            if (err) {
                process.stderr.write(`ref-mdserver: closing LevelDB: ${err}\n`);
            }
            process.exit(0);
        });
    });
});
