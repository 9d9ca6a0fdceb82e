'use strict';
// Placeholder installed (through npm "overrides" in ../../package.json) in place of
// Arsenal 8.5.16 dependencies that the file data/metadata code paths never require:
// the AWS/Azure SDKs, MongoDB, Redis, OpenTelemetry, hdclient, ... They make up
// most of Arsenal's ~340-package install. If some code path does require one, it
// must fail loudly rather than half-work: drop the matching override and
// regenerate package-lock.json.
throw new Error(
    'tests/arsenal: this Arsenal dependency is replaced by standins/unneeded to keep '
    + 'the install lean; the code path that required it is not covered by the harness '
    + '(remove its entry from "overrides" in tests/arsenal/package.json)');
