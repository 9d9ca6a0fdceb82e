//! The value surgery of §5.3, byte for byte: the reference edits metadata JSON as text (in
//! UTF-16 code units, as JavaScript strings are), and parses it only to read a few fields.

use super::jsjson::{self, Js, JsObj};

/// The reference's `Version._jsonAppend`: drop the last code unit (assumed `}`), add a comma
/// unless the last non-space character before it is `{`, then `"<name>":"<value>"}`.
/// Nothing is parsed or deduplicated.
fn json_append(value: &[u16], name: &str, field: &[u16]) -> Vec<u16> {
    // `charAt(index)` with index = length - 2, skipping spaces; out of range gives "".
    let mut index = value.len() as isize - 2;
    while index >= 0 && value[index as usize] == u16::from(b' ') {
        index -= 1;
    }
    let need_comma = !(index >= 0 && value[index as usize] == u16::from(b'{'));
    let mut out: Vec<u16> = value[..value.len().saturating_sub(1)].to_vec();
    if need_comma {
        out.push(u16::from(b','));
    }
    out.push(u16::from(b'"'));
    out.extend(name.encode_utf16());
    out.extend("\":\"".encode_utf16());
    out.extend_from_slice(field);
    out.extend("\"}".encode_utf16());
    out
}

/// `appendVersionId(value, vid)`.
pub fn append_version_id(value: &str, vid: &str) -> String {
    let out = json_append(&jsjson::units(value), "versionId", &jsjson::units(vid));
    jsjson::lossy(&out)
}

/// `updateOrAppendNullVersionId(value, id)`: replace the first `"nullVersionId":"[^"]*"`, or
/// append the field.
pub fn update_or_append_null_version_id(value: &str, id: &[u16]) -> String {
    const PAT: &str = "\"nullVersionId\":\"";
    let id = jsjson::lossy(id);
    if let Some(at) = value.find(PAT) {
        let rest = &value[at + PAT.len()..];
        if let Some(close) = rest.find('"') {
            return format!(
                "{}\"nullVersionId\":\"{id}\"{}",
                &value[..at],
                &rest[close + 1..]
            );
        }
    }
    let out = json_append(&jsjson::units(value), "nullVersionId", &jsjson::units(&id));
    jsjson::lossy(&out)
}

/// The placeholder master written when the current version is deleted (spaces included).
pub fn phd(vid: &str) -> String {
    format!("{{ \"isPHD\": true, \"versionId\": \"{vid}\" }}")
}

/// `Version.isPHD(value)`: contains `isPHD` and parses to something with a truthy `isPHD`.
pub fn is_phd(value: &str) -> bool {
    if value.is_empty() || !value.contains("isPHD") {
        return false;
    }
    match jsjson::parse(value) {
        Ok(Js::Obj(o)) => jsjson::truthy(o.get("isPHD")),
        _ => false,
    }
}

/// The reference's `Version.from(value)`: `new Version(value ? JSON.parse(value) : undefined)`,
/// which keeps `parsed || {}`.
#[derive(Debug, Clone)]
pub struct Version(Js);

/// Why a stored master could not be used (the reference throws; we answer a plain error).
#[derive(Debug)]
pub struct VersionError(pub String);

impl Version {
    pub fn from(value: &str) -> Result<Version, VersionError> {
        if value.is_empty() {
            return Ok(Version(Js::Obj(JsObj::default())));
        }
        let parsed = jsjson::parse(value)
            .map_err(|e| VersionError(format!("Unexpected token in JSON: {e}")))?;
        Ok(Version(if jsjson::truthy(Some(&parsed)) {
            parsed
        } else {
            Js::Obj(JsObj::default())
        }))
    }

    fn prop(&self, name: &str) -> Option<&Js> {
        match &self.0 {
            Js::Obj(o) => o.get(name),
            _ => None,
        }
    }

    /// `getVersionId()`: whatever `versionId` holds, `None` for undefined.
    pub fn version_id(&self) -> Option<&Js> {
        self.prop("versionId")
    }

    pub fn is_null(&self) -> bool {
        jsjson::truthy(self.prop("isNull"))
    }

    pub fn is_null2(&self) -> bool {
        jsjson::truthy(self.prop("isNull2"))
    }

    fn set(&mut self, name: &str, v: Js) -> Result<(), VersionError> {
        match &mut self.0 {
            Js::Obj(o) => {
                o.set(name, v);
                Ok(())
            }
            // A property set on an array is not serialised by JSON.stringify.
            Js::Arr(_) => Ok(()),
            other => Err(VersionError(format!(
                "Cannot create property '{name}' on {} '{}'",
                match other {
                    Js::Str(_) => "string",
                    Js::Num(_) => "number",
                    _ => "boolean",
                },
                jsjson::lossy(&jsjson::to_string(Some(other)))
            ))),
        }
    }

    pub fn set_version_id(&mut self, vid: &str) -> Result<(), VersionError> {
        self.set("versionId", Js::Str(jsjson::units(vid)))
    }

    pub fn set_null(&mut self) -> Result<(), VersionError> {
        self.set("isNull", Js::Bool(true))
    }

    /// `setNull2Version()`: sets `isNull2` then `isNull`.
    pub fn set_null2(&mut self) -> Result<(), VersionError> {
        self.set("isNull2", Js::Bool(true))?;
        self.set("isNull", Js::Bool(true))
    }

    /// `toString()`: `JSON.stringify` of the parsed value.
    pub fn serialise(&self) -> String {
        jsjson::lossy(&jsjson::stringify(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append() {
        assert_eq!(
            append_version_id(r#"{"gen":1}"#, "v1"),
            r#"{"gen":1,"versionId":"v1"}"#
        );
        assert_eq!(append_version_id("{}", "v"), r#"{"versionId":"v"}"#);
        assert_eq!(append_version_id("{  }", "v"), r#"{  "versionId":"v"}"#);
        assert_eq!(
            append_version_id(r#"{"a":1 }"#, "v"),
            r#"{"a":1 ,"versionId":"v"}"#
        );
        // Not parsed: a second versionId is appended.
        assert_eq!(
            append_version_id(r#"{"versionId":"a"}"#, "b"),
            r#"{"versionId":"a","versionId":"b"}"#
        );
        // Degenerate values, as JavaScript computes them.
        assert_eq!(append_version_id("", "v"), r#","versionId":"v"}"#);
        assert_eq!(append_version_id("}", "v"), r#","versionId":"v"}"#);
        // The last UTF-16 unit is dropped: half of a surrogate pair becomes U+FFFD.
        assert_eq!(
            append_version_id("{\"a\":\"😀", "v"),
            "{\"a\":\"\u{FFFD},\"versionId\":\"v\"}"
        );
    }

    #[test]
    fn null_version_id() {
        let id = jsjson::units("X");
        assert_eq!(
            update_or_append_null_version_id(
                r#"{"a":1,"nullVersionId":"old","b":"nullVersionId"}"#,
                &id
            ),
            r#"{"a":1,"nullVersionId":"X","b":"nullVersionId"}"#
        );
        assert_eq!(
            update_or_append_null_version_id(r#"{"a":1}"#, &id),
            r#"{"a":1,"nullVersionId":"X"}"#
        );
    }

    #[test]
    fn phd_text() {
        let p = phd("98204437834670999999RG001  24");
        assert_eq!(
            p,
            r#"{ "isPHD": true, "versionId": "98204437834670999999RG001  24" }"#
        );
        assert!(is_phd(&p));
        assert!(!is_phd(r#"{"isPHD":false}"#));
        assert!(!is_phd(r#"{"note":"isPHD"}"#));
        assert!(!is_phd("isPHD not json"));
        assert!(!is_phd(""));
    }

    #[test]
    fn master_reserialisation() {
        let mut m = Version::from(r#"{"a":0, "n":1.50}"#).unwrap();
        assert!(m.version_id().is_none());
        m.set_version_id("99999999999999999999RG001  ").unwrap();
        m.set_null().unwrap();
        m.set_null2().unwrap();
        assert_eq!(
            m.serialise(),
            r#"{"a":0,"n":1.5,"versionId":"99999999999999999999RG001  ","isNull":true,"isNull2":true}"#
        );
        assert!(Version::from("null").unwrap().version_id().is_none());
        assert!(Version::from("not json").is_err());
        assert!(Version::from("\"s\"").unwrap().set_null().is_err());
    }
}
