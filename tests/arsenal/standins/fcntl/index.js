'use strict';
// Stand-in for fcntl (scality/node-fcntl#0.3.0, a native addon fetched from GitHub).
// Arsenal calls it as posixFadvise(fd, offset, len, advice) from
// storage/data/file/utils.js (releasePageCacheSync) to drop a file's pages from
// the page cache (POSIX_FADV_DONTNEED = 4) after a read/write when `noCache` is
// set. posix_fadvise is only a hint: it never changes data or durability, so a
// no-op that reports success (0, like the real call) keeps DataFileStore's
// behaviour identical apart from page-cache usage. Node has no way to issue the
// syscall without a native addon.
function posixFadvise(fd, offset, len, advice) {
    if (!Number.isInteger(fd) || fd < 0) {
        throw new TypeError(`fcntl stand-in: bad file descriptor ${fd}`);
    }
    void offset; void len; void advice;
    return 0;
}

module.exports = posixFadvise;
module.exports.posixFadvise = posixFadvise;
