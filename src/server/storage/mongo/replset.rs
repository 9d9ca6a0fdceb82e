//! Initiating the bundled single-node replica set (`--mongodb-init-replset`).
//!
//! The stack's `mongodb` service runs `mongod --replSet rs0` with nothing else in the image: a
//! fresh replica-set member refuses writes until someone runs `replSetInitiate`. The metadata
//! server does it at start-up, so no manual step or init container is needed:
//!
//! 1. connect directly to the URI's first host (a member without a config has no set name, so a
//!    replica-set connection could never select it);
//! 2. `replSetGetStatus`: ok → initiated already (nothing to do); NotYetInitialized (94) →
//!    `replSetInitiate {_id: <the URI's replicaSet>, members: [{_id: 0, host: <that host>}]}`;
//!    NoReplicationEnabled (76) → a clear error (mongod was started without `--replSet`);
//! 3. an initiate that loses to a concurrent one (another server instance starting at the same
//!    time) gets AlreadyInitialized (23) or ConfigurationInProgress (109): fine, the set is (being)
//!    initiated either way;
//! 4. wait until the member is a writable primary.
//!
//! The member host is the URI's host as the servers see it (`mongodb:27017` in the stack):
//! mongod accepts it when the name leads back to itself, and the driver then discovers the set
//! under that name, which every server instance resolves the same way.

use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document};
use mongodb::error::{Error as MongoError, ErrorKind};
use mongodb::options::ClientOptions;
use mongodb::Client;

use super::{err, is_retryable};
use crate::server::storage::StorageError;

/// mongod's error codes met on the way.
const ALREADY_INITIALIZED: i32 = 23;
const NO_REPLICATION_ENABLED: i32 = 76;
const NOT_YET_INITIALIZED: i32 = 94;
const CONFIGURATION_IN_PROGRESS: i32 = 109;

/// What `replSetGetStatus` says about the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// A replica set named so (ok reply).
    Initiated { set: String },
    /// Started with `--replSet` but never initiated.
    NotInitiated,
    /// A standalone mongod (no `--replSet`).
    Standalone,
}

/// The code of a command error, if `e` is one.
fn command_code(e: &MongoError) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// Reads a `replSetGetStatus` outcome: the ok reply, or the command error's code. Other
/// errors are not a status (`None`: the caller retries or fails with them).
pub fn classify_status(reply: Result<&Document, i32>) -> Option<Status> {
    match reply {
        Ok(d) => Some(Status::Initiated {
            set: d.get_str("set").unwrap_or_default().to_string(),
        }),
        Err(NOT_YET_INITIALIZED) => Some(Status::NotInitiated),
        Err(NO_REPLICATION_ENABLED) => Some(Status::Standalone),
        Err(_) => None,
    }
}

/// Whether a `replSetInitiate` error means the set is initiated (or being initiated) by someone
/// else: the race between instances starting together, which the loser must not fail on.
pub fn initiate_lost_race(code: i32) -> bool {
    code == ALREADY_INITIALIZED || code == CONFIGURATION_IN_PROGRESS
}

/// Whether a `hello` reply is from a writable primary of a replica set.
pub fn is_writable_primary(hello: &Document) -> bool {
    hello.get_bool("isWritablePrimary").unwrap_or(false) && hello.get_str("setName").is_ok()
}

/// The `replSetInitiate` config of the single-node set `set` on `host`.
pub fn initiate_config(set: &str, host: &str) -> Document {
    doc! {"_id": set, "members": [{"_id": 0, "host": host}]}
}

/// Make sure the replica set named in `opts` (its `replicaSet`) is initiated, initiating it as
/// a single-node set on the URI's first host if needed, then wait (up to `window`) for that
/// member to be a writable primary.
pub async fn ensure_initiated(opts: &ClientOptions, window: Duration) -> Result<(), StorageError> {
    let set = opts.repl_set_name.clone().ok_or_else(|| {
        err(
            "initiating the replica set",
            "--mongodb-init-replset needs the replica set's name in the URI (?replicaSet=NAME)",
        )
    })?;
    let host = opts
        .hosts
        .first()
        .ok_or_else(|| err("initiating the replica set", "the URI names no host"))?
        .to_string();
    let mut direct = opts.clone();
    direct.hosts.truncate(1);
    direct.repl_set_name = None;
    direct.direct_connection = Some(true);
    let client = Client::with_options(direct).map_err(|e| {
        err(
            format!("connecting to {host} to initiate the replica set"),
            e,
        )
    })?;
    let admin = client.database("admin");
    let start = Instant::now();
    let deadline = start + window;
    let mut initiated_here = false;
    loop {
        let failed = |what: &str, e: MongoError| {
            err(
                format!(
                    "initiating replica set {set:?} on {host}: {what} (for {:.1} s)",
                    start.elapsed().as_secs_f64()
                ),
                e,
            )
        };
        let status = match admin.run_command(doc! {"replSetGetStatus": 1}).await {
            Ok(d) => classify_status(Ok(&d)),
            Err(e) => match command_code(&e).and_then(|c| classify_status(Err(c))) {
                Some(s) => Some(s),
                None if is_retryable(&e) && Instant::now() < deadline => {
                    // Not up yet, or starting (e.g. still loading its config): ask again.
                    tracing::debug!(error = %e, %host, "mongodb: replSetGetStatus: retrying");
                    None
                }
                None => return Err(failed("replSetGetStatus", e)),
            },
        };
        match status {
            Some(Status::Standalone) => {
                return Err(err(
                    format!("initiating replica set {set:?} on {host}"),
                    "this mongod runs without --replSet (a standalone server): start it with \
                     `--replSet NAME`, or drop replicaSet and --mongodb-init-replset from the \
                     configuration",
                ))
            }
            Some(Status::Initiated { set: actual }) if actual != set => {
                return Err(err(
                    format!("initiating replica set {set:?} on {host}"),
                    format!(
                    "the server is a member of replica set {actual:?}, not {set:?} as the URI says"
                ),
                ))
            }
            Some(Status::NotInitiated) => {
                let cmd = doc! {"replSetInitiate": initiate_config(&set, &host)};
                match admin.run_command(cmd).await {
                    Ok(_) => {
                        initiated_here = true;
                        tracing::info!(%set, %host, "mongodb: initiated the replica set");
                    }
                    Err(e) if command_code(&e).is_some_and(initiate_lost_race) => {
                        tracing::info!(%set, %host, "mongodb: the replica set was initiated concurrently");
                    }
                    // NotYetInitialized here: the member is still starting up; try again.
                    Err(e)
                        if Instant::now() < deadline
                            && (is_retryable(&e)
                                || command_code(&e) == Some(NOT_YET_INITIALIZED)) => {}
                    Err(e) => return Err(failed("replSetInitiate", e)),
                }
            }
            Some(Status::Initiated { .. }) | None => {}
        }
        if let Ok(hello) = admin.run_command(doc! {"hello": 1}).await {
            if is_writable_primary(&hello) {
                if initiated_here {
                    tracing::info!(%set, %host, secs = start.elapsed().as_secs_f64(), "mongodb: the replica set has a primary");
                }
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(err(
                format!("initiating replica set {set:?} on {host}"),
                format!(
                    "no writable primary after {:.1} s",
                    start.elapsed().as_secs_f64()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ok_status_is_an_initiated_set() {
        // The shape of the reply (SecantusDB's, as mongod's): ok, with the set's name.
        let reply = doc! {"set": "rs0", "myState": 1, "members": [{"_id": 0, "name": "mongodb:27017", "stateStr": "PRIMARY"}], "ok": 1.0};
        assert_eq!(
            classify_status(Ok(&reply)),
            Some(Status::Initiated { set: "rs0".into() })
        );
    }

    #[test]
    fn status_error_codes() {
        // 94: mongod --replSet before replSetInitiate; 76: measured on SecantusDB --standalone
        // ("not running with --replSet"), as mongod without --replSet.
        assert_eq!(classify_status(Err(94)), Some(Status::NotInitiated));
        assert_eq!(classify_status(Err(76)), Some(Status::Standalone));
        // Anything else (e.g. Unauthorized 13, CommandNotFound 59) is not a status.
        assert_eq!(classify_status(Err(13)), None);
        assert_eq!(classify_status(Err(59)), None);
    }

    #[test]
    fn losing_the_initiate_race_is_fine() {
        assert!(initiate_lost_race(23));
        assert!(initiate_lost_race(109));
        assert!(!initiate_lost_race(93)); // InvalidReplicaSetConfig: a real failure
        assert!(!initiate_lost_race(94));
    }

    #[test]
    fn primary_detection() {
        assert!(is_writable_primary(
            &doc! {"isWritablePrimary": true, "setName": "rs0"}
        ));
        // An uninitiated member answers hello without a set name.
        assert!(!is_writable_primary(
            &doc! {"isWritablePrimary": false, "isreplicaset": true}
        ));
        // Standalone: writable, but not a replica set.
        assert!(!is_writable_primary(&doc! {"isWritablePrimary": true}));
        assert!(!is_writable_primary(
            &doc! {"isWritablePrimary": false, "secondary": true, "setName": "rs0"}
        ));
    }

    #[test]
    fn config_names_the_member_as_the_servers_reach_it() {
        assert_eq!(
            initiate_config("rs0", "mongodb:27017"),
            doc! {"_id": "rs0", "members": [{"_id": 0, "host": "mongodb:27017"}]}
        );
    }
}
