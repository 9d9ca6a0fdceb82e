'use strict';
// Stand-in for sproxydclient (scality/sproxydclient#8.2.2, GitHub-only). It is only
// reached by Arsenal's sproxyd data backend, which the file backends under test
// never use. Constructing a client fails loudly instead of pretending to work.
class SproxydClient {
    constructor() {
        throw new Error('sproxydclient is a stand-in in tests/arsenal: the sproxyd backend is not available');
    }
}

module.exports = SproxydClient;
module.exports.default = SproxydClient;
