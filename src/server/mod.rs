//! The bundled Arsenal-compatible servers run by `zenkoctl serve`.
//! - [`metadata`]: the metadata daemon (socket.io RPC, port 9990) over [`storage`].

pub mod metadata;
pub mod storage;
