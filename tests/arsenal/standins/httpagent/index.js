'use strict';
// Stand-in for httpagent (scality/httpagent#1.1.0, GitHub-only). The real package
// wraps Node's agents to add socket-level tweaks (TCP_NODELAY, keep-alive
// accounting). Arsenal only uses `new http.Agent(opts)` / `new https.Agent(opts)`,
// whose options (keepAlive, keepAliveMsecs, maxSockets, ...) Node's own agents
// accept. A second constructor argument (httpagent-specific settings) is ignored.
const http = require('http');
const https = require('https');

class HttpAgent extends http.Agent {
    constructor(options) {
        super(options);
    }
}

class HttpsAgent extends https.Agent {
    constructor(options) {
        super(options);
    }
}

module.exports = {
    http: { Agent: HttpAgent },
    https: { Agent: HttpsAgent },
};
