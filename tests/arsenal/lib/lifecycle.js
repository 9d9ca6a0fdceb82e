'use strict';
// What both reference servers do around Arsenal's server objects: announce the port the
// Rust harness waits for, and stop once (and only once) on SIGTERM/SIGINT.

/** The one line the harness reads on stdout once the server listens. */
function announceReady(port) {
    process.stdout.write(`READY ${port}\n`);
}

/**
 * Runs `stop(signal)` on the first SIGTERM or SIGINT, logging it under `name`; later signals
 * are ignored so a second Ctrl-C cannot interrupt a clean shutdown half-way.
 */
function stopOnSignals(name, stop) {
    let stopping = false;
    const onSignal = signal => {
        if (stopping) {
            return;
        }
        stopping = true;
        process.stderr.write(`${name}: ${signal}, stopping\n`);
        stop(signal);
    };
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    process.on('SIGINT', () => onSignal('SIGINT'));
}

module.exports = { announceReady, stopOnSignals };
