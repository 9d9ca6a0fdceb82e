//! The protocol edge: Arsenal's `/DataFile` REST protocol (spec §6) over hyper.
//!
//! Routing follows the reference's order exactly, because clients see the differences: the
//! method first (405), then `GET /DataFile?diskUsage`, then the path rules (`InvalidURI`,
//! `InvalidAction`, `MissingParameter`), then the `Content-Length` of a PUT, then the object.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    HeaderValue, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{DataBody, FileBody};
use super::range::{self, Resolved};
use super::store::{DataStore, FsError, Key, LookupError, Upload};
use super::zerocopy::Slots;
use crate::server::observe::{self, Direction, Observability, ServiceMetrics};

/// The one service name of the data protocol.
pub const DATA_FILE_URL: &str = "/DataFile";

/// Uploads are written to disk in batches of about this many bytes (one blocking-pool trip per
/// batch). Bounds the memory an upload holds.
const WRITE_BATCH: usize = 1024 * 1024;

/// An error in Arsenal's encoding: status = code, body
/// `{"errorType":"<name>","errorMessage":"<description>"}\n`, no Content-Type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: &'static str,
    pub message: Cow<'static, str>,
}

impl ApiError {
    fn new(status: u16, error_type: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).expect("valid status"),
            error_type,
            message: message.into(),
        }
    }
    pub fn obj_not_found() -> Self {
        Self::new(404, "ObjNotFound", "This object does not exist")
    }
    pub fn invalid_range() -> Self {
        Self::new(
            416,
            "InvalidRange",
            "The requested range cannot be satisfied.",
        )
    }
    pub fn missing_content_length() -> Self {
        Self::new(
            411,
            "MissingContentLength",
            "You must provide the Content-Length HTTP header.",
        )
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
        )
    }
    pub fn invalid_uri(message: &'static str) -> Self {
        Self::new(400, "InvalidURI", message)
    }
    pub fn internal(message: String) -> Self {
        Self::new(500, "InternalError", message)
    }
    fn fs(e: &FsError) -> Self {
        Self::internal(format!(
            "filesystem error: {}() returned {}",
            e.op,
            e.code()
        ))
    }

    pub fn body(&self) -> String {
        // Same key order as the reference's JSON.stringify({errorType, errorMessage}).
        let message = serde_json::Value::from(self.message.as_ref());
        format!(
            "{{\"errorType\":\"{}\",\"errorMessage\":{message}}}\n",
            self.error_type
        )
    }

    fn response(&self) -> Response<DataBody> {
        let body = self.body();
        let mut resp = Response::new(DataBody::full(body.clone()));
        *resp.status_mut() = self.status;
        resp.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        resp
    }
}

/// What a request asks for, once routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    DiskUsage,
    Put,
    /// The key as sent: any `[0-9a-f]+`; only 40-character keys can exist.
    Get(String),
    Delete(String),
}

/// Routes a request the way Arsenal's `RESTServer` does. `target` is the request target
/// (path and query).
pub fn route(method: &Method, target: &str) -> Result<Route, ApiError> {
    let expect_key = match *method {
        Method::PUT => false,
        Method::GET | Method::DELETE => true,
        _ => return Err(ApiError::method_not_allowed()),
    };
    // url.parse(): the fragment is not part of the path; the query string is.
    let target = target.split('#').next().unwrap_or_default();
    if *method == Method::GET {
        if let Some(query) = target.strip_prefix("/DataFile?") {
            if query == "diskUsage" {
                return Ok(Route::DiskUsage);
            }
        }
    }
    let path = decode_uri(target).ok_or_else(|| ApiError::invalid_uri("malformed URI"))?;
    let (service, key) =
        explode_path(&path).ok_or_else(|| ApiError::invalid_uri("malformed URI"))?;
    if service != DATA_FILE_URL {
        return Err(ApiError::new(
            400,
            "InvalidAction",
            format!("unsupported service '{service}'"),
        ));
    }
    match (expect_key, key) {
        (false, None) => Ok(Route::Put),
        (false, Some(_)) => Err(ApiError::invalid_uri("PUT url cannot contain a key")),
        (true, None) => Err(ApiError::new(400, "MissingParameter", "URL is missing key")),
        (true, Some(k)) if *method == Method::GET => Ok(Route::Get(k.to_string())),
        (true, Some(k)) => Ok(Route::Delete(k.to_string())),
    }
}

/// `^(/[a-zA-Z0-9]+)(/([0-9a-f]*))?$` → (service, non-empty key).
fn explode_path(path: &str) -> Option<(&str, Option<&str>)> {
    let rest = path.strip_prefix('/')?;
    let (service, key) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if service.is_empty() || !service.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    if let Some(k) = key {
        if !k
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
    }
    Some((&path[..service.len() + 1], key.filter(|k| !k.is_empty())))
}

/// JavaScript's `decodeURI`: `%XX` escapes are decoded, except those that decode to a reserved
/// character (`;/?:@&=+$,#`), which stay as they are. `None` where `decodeURI` throws.
fn decode_uri(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3)?;
        let b = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
        if b.is_ascii() && b";/?:@&=+$,#".contains(&b) {
            out.extend_from_slice(&bytes[i..i + 3]);
        } else {
            out.push(b);
        }
        i += 3;
    }
    String::from_utf8(out).ok()
}

/// The data service: the store and its metrics.
#[derive(Debug)]
pub struct DataService {
    store: Arc<DataStore>,
    obs: Arc<Observability>,
    metrics: Arc<ServiceMetrics>,
    bytes_in: Arc<AtomicU64>,
    bytes_out: Arc<AtomicU64>,
}

impl DataService {
    pub fn new(store: Arc<DataStore>, obs: Arc<Observability>) -> Self {
        let metrics = obs.service("data");
        DataService {
            bytes_in: metrics.bytes_counter("put", Direction::In),
            bytes_out: metrics.bytes_counter("get", Direction::Out),
            store,
            obs,
            metrics,
        }
    }

    pub fn store(&self) -> &Arc<DataStore> {
        &self.store
    }

    /// Answers one request. Never fails: errors become Arsenal error responses. `zero_copy`: the
    /// connection's placeholder registry when it can send file bodies with `sendfile`.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        zero_copy: Option<Arc<Slots>>,
    ) -> Response<DataBody> {
        let uids = observe::request_uids(req.headers());
        let method = req.method().clone();
        let target = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
        let mut timer = self.metrics.start("other");

        if method == Method::GET {
            if let Some(answer) = self.obs.answer(&target) {
                timer.set_op("observe");
                let mut resp = Response::new(DataBody::full(answer.body));
                *resp.status_mut() = answer.status;
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
                timer.finish(resp.status());
                return resp;
            }
        }

        let result = match route(&method, &target) {
            Err(e) => Err(e),
            Ok(Route::Put) => {
                timer.set_op("put");
                self.put(req).await
            }
            Ok(Route::Get(key)) => {
                timer.set_op("get");
                self.get(
                    &key,
                    req.headers().get(RANGE).map(HeaderValue::as_bytes),
                    zero_copy,
                )
            }
            Ok(Route::Delete(key)) => {
                timer.set_op("delete");
                self.delete(&key).await
            }
            Ok(Route::DiskUsage) => {
                timer.set_op("disk_usage");
                self.disk_usage()
            }
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                if e.status.is_server_error() {
                    tracing::error!(req_uids = %uids, %method, target = %target,
                        error_type = e.error_type, error = %e.message, "data request failed");
                }
                e.response()
            }
        };
        tracing::debug!(req_uids = %uids, %method, target = %target, status = resp.status().as_u16(),
            elapsed_us = timer.elapsed().as_micros() as u64, "data request");
        timer.finish(resp.status());
        resp
    }

    async fn put(&self, req: Request<Incoming>) -> Result<Response<DataBody>, ApiError> {
        match req.headers().get(CONTENT_LENGTH) {
            None => return Err(ApiError::missing_content_length()),
            Some(v) if parse_int_prefix(v.as_bytes()).is_none() => {
                return Err(ApiError::new(400, "InvalidInput", "bad Content-Length"))
            }
            Some(_) => {}
        }
        let uids = observe::request_uids(req.headers());
        let mut body = req.into_body();
        // Double buffering: while one batch is written on the blocking pool, the next one is
        // received. `writing` owns the upload while its write runs; if this future is dropped
        // (client gone, shutdown), the write finishes, the upload is dropped with its result
        // and its temporary file removed.
        let mut writing: Option<tokio::task::JoinHandle<Result<Upload, FsError>>> = None;
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batched = 0usize;
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.bytes_in
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                        batched += data.len();
                        batch.push(data);
                        if batched >= WRITE_BATCH {
                            let upload = match writing.take() {
                                Some(w) => Some(joined(w).await?),
                                None => None,
                            };
                            let store = self.store.clone();
                            let bufs = std::mem::take(&mut batch);
                            batched = 0;
                            writing = Some(tokio::task::spawn_blocking(move || {
                                let mut up = match upload {
                                    Some(up) => up,
                                    None => store.begin_upload()?,
                                };
                                up.write(&bufs)?;
                                Ok(up)
                            }));
                        }
                    }
                }
                Some(Err(e)) => {
                    // The client went away or broke framing: the temporary file (if any) is
                    // removed when the upload drops; nothing becomes visible.
                    tracing::info!(req_uids = %uids, error = %e, "upload aborted by the client");
                    return Err(ApiError::internal(format!("read stream error: {e}")));
                }
                None => break,
            }
        }
        let upload = match writing.take() {
            Some(w) => Some(joined(w).await?),
            None => None,
        };
        let store = self.store.clone();
        let key = blocking(move || {
            let mut up = match upload {
                Some(up) => up,
                None => store.begin_upload()?,
            };
            up.write(&batch)?;
            up.commit()
        })
        .await?;
        let mut resp = Response::new(DataBody::Empty);
        *resp.status_mut() = StatusCode::CREATED;
        let location = format!("{DATA_FILE_URL}/{key}");
        resp.headers_mut().insert(
            LOCATION,
            HeaderValue::from_str(&location).expect("keys are hex"),
        );
        resp.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(0));
        Ok(resp)
    }

    fn get(
        &self,
        key: &str,
        range_header: Option<&[u8]>,
        zero_copy: Option<Arc<Slots>>,
    ) -> Result<Response<DataBody>, ApiError> {
        // A key that is not 40 lowercase hex characters was never handed out: it cannot exist,
        // and it is never turned into a path.
        let key = Key::parse(key).ok_or_else(ApiError::obj_not_found)?;
        let spec = range_header.and_then(range::parse);
        // Opening a file is a metadata lookup that the dentry cache answers for hot objects;
        // it stays on the runtime thread (a blocking-pool trip would cost more than it saves).
        let (file, size) = match self.store.open_object(&key) {
            Ok(found) => found,
            Err(LookupError::NotFound) => return Err(ApiError::obj_not_found()),
            Err(LookupError::Fs(e)) => return Err(ApiError::fs(&e)),
        };
        let resolved = spec.map_or(Resolved::Whole, |s| range::resolve(s, size));
        let (status, start, len) = match resolved {
            Resolved::Unsatisfiable => return Err(ApiError::invalid_range()),
            Resolved::Whole => (StatusCode::OK, 0, size),
            Resolved::Partial { start, end } => {
                (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
            }
        };
        let body = if len == 0 {
            DataBody::Empty
        } else {
            DataBody::File(FileBody::new(
                file,
                start,
                len,
                self.bytes_out.clone(),
                zero_copy,
            ))
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
        h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if status == StatusCode::PARTIAL_CONTENT {
            let value = format!("bytes {start}-{}/{size}", start + len - 1);
            h.insert(
                CONTENT_RANGE,
                HeaderValue::from_str(&value).expect("digits"),
            );
        }
        Ok(resp)
    }

    async fn delete(&self, key: &str) -> Result<Response<DataBody>, ApiError> {
        let key = Key::parse(key).ok_or_else(ApiError::obj_not_found)?;
        let store = self.store.clone();
        let outcome = tokio::task::spawn_blocking(move || store.delete(&key))
            .await
            .map_err(|e| ApiError::internal(format!("delete task failed: {e}")))?;
        match outcome {
            Ok(()) => {
                let mut resp = Response::new(DataBody::Empty);
                *resp.status_mut() = StatusCode::NO_CONTENT;
                Ok(resp)
            }
            Err(LookupError::NotFound) => Err(ApiError::obj_not_found()),
            Err(LookupError::Fs(e)) => Err(ApiError::fs(&e)),
        }
    }

    fn disk_usage(&self) -> Result<Response<DataBody>, ApiError> {
        let du = self.store.disk_usage().map_err(|e| ApiError::fs(&e))?;
        let body = format!(
            "{{\"available\":{},\"free\":{},\"total\":{}}}",
            du.available, du.free, du.total
        );
        let mut resp = Response::new(DataBody::full(body.clone()));
        resp.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        Ok(resp)
    }
}

/// `Number.parseInt(v, 10)` is not NaN: optional whitespace and sign, then at least one digit.
fn parse_int_prefix(v: &[u8]) -> Option<()> {
    let s = std::str::from_utf8(v).ok()?.trim_start();
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    s.bytes().next().filter(u8::is_ascii_digit).map(|_| ())
}

/// Runs filesystem work on the blocking pool; a filesystem error becomes `InternalError`.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FsError> + Send + 'static,
) -> Result<T, ApiError> {
    joined(tokio::task::spawn_blocking(f)).await
}

/// Waits for blocking filesystem work; a filesystem error becomes `InternalError`.
async fn joined<T>(handle: tokio::task::JoinHandle<Result<T, FsError>>) -> Result<T, ApiError> {
    match handle.await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "data store failure");
            Err(ApiError::fs(&e))
        }
        Err(e) => Err(ApiError::internal(format!("storage task failed: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: Method, target: &str) -> Result<Route, &'static str> {
        route(&method, target).map_err(|e| e.error_type)
    }
    const K: &str = "10ce68ffa0d239716f3642d960ce6192d8cdb563";

    #[test]
    fn routes_like_the_reference() {
        assert_eq!(r(Method::PUT, "/DataFile/"), Ok(Route::Put));
        assert_eq!(r(Method::PUT, "/DataFile"), Ok(Route::Put));
        assert_eq!(r(Method::GET, "/DataFile?diskUsage"), Ok(Route::DiskUsage));
        assert_eq!(
            r(Method::GET, &format!("/DataFile/{K}")),
            Ok(Route::Get(K.into()))
        );
        assert_eq!(
            r(Method::DELETE, &format!("/DataFile/{K}")),
            Ok(Route::Delete(K.into()))
        );
        // Short hex keys route (and then are not found).
        assert_eq!(
            r(Method::GET, "/DataFile/abc"),
            Ok(Route::Get("abc".into()))
        );
        // %-escapes of unreserved characters are decoded.
        assert_eq!(
            r(Method::GET, "/DataFil%65/abc"),
            Ok(Route::Get("abc".into()))
        );
    }

    #[test]
    fn rejects_like_the_reference() {
        assert_eq!(r(Method::HEAD, "/DataFile/abc"), Err("MethodNotAllowed"));
        assert_eq!(r(Method::POST, "/DataFile/"), Err("MethodNotAllowed"));
        assert_eq!(r(Method::PUT, &format!("/DataFile/{K}")), Err("InvalidURI"));
        assert_eq!(r(Method::GET, "/DataFile/"), Err("MissingParameter"));
        assert_eq!(r(Method::DELETE, "/DataFile"), Err("MissingParameter"));
        assert_eq!(r(Method::GET, "/Other/abc"), Err("InvalidAction"));
        for bad in [
            "/DataFile/?diskUsage",
            "/DataFile?other",
            "/DataFile/ABCDEF",
            "/DataFile/abc?x",
            "/DataFile/../../etc/passwd",
            "/DataFile/%2e%2e/%2e%2e/etc",
            "/DataFile/abc/def",
            "/DataFile%2Fabc",
            "/DataFile/ab%00cd",
            "/DataFile/ab%zz",
            "/DataFile/ab%c3%28",
            "//DataFile/abc",
            "/",
            "",
        ] {
            assert_eq!(r(Method::GET, bad), Err("InvalidURI"), "{bad}");
        }
        assert_eq!(r(Method::PUT, "/DataFile?diskUsage"), Err("InvalidURI"));
    }

    #[test]
    fn error_body_is_arsenal_json_with_newline() {
        let body = ApiError::obj_not_found().body();
        // Byte for byte what Appendix A.7 captured from the reference.
        assert_eq!(
            body,
            "{\"errorType\":\"ObjNotFound\",\"errorMessage\":\"This object does not exist\"}\n"
        );
    }

    #[test]
    fn content_length_parse_int_semantics() {
        assert!(parse_int_prefix(b"12").is_some());
        assert!(parse_int_prefix(b"12abc").is_some());
        assert!(parse_int_prefix(b"abc").is_none());
        assert!(parse_int_prefix(b"").is_none());
    }
}
