//! The offline image: an already-built `zenkoctl` packed into a `FROM scratch` image with
//! exactly what it needs to run, so building it pulls nothing (templates/Dockerfile.offline).
//!
//! The binary is linked against glibc, so the image carries its ELF interpreter and the shared
//! libraries it needs, at the paths the loader looks them up (as `ldd` resolves them on this
//! machine); plus `/etc/passwd` and `/etc/group` naming the non-root user, `/etc/nsswitch.conf`
//! (glibc reads it for name resolution; `/etc/hosts` and `/etc/resolv.conf` are provided by
//! the engine), a `/tmp`, and the data directories owned by that user, so that a new named
//! volume mounted there starts out writable by it (the engine copies the ownership of the
//! image's directory into an empty volume).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

use super::context::{BuildContext, Source};

/// The Dockerfile of the offline image, compiled in.
pub const DOCKERFILE: &str = include_str!("../../templates/Dockerfile.offline");

/// Where the binary lands in the image (the Dockerfile's ENTRYPOINT and HEALTHCHECK use it).
pub const BINARY_PATH: &str = "usr/local/bin/zenkoctl";
/// The non-root user the image runs as.
pub const USER: &str = "zenko";
pub const UID: u32 = 10001;

/// The files a dynamically linked executable needs at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// The ELF interpreter (`PT_INTERP`), as the path the binary names.
    pub interpreter: Option<PathBuf>,
    /// Shared libraries, as absolute paths where the loader finds them.
    pub libraries: Vec<PathBuf>,
}

/// Resolves what `binary` loads, with `ldd` (glibc's own resolver: search paths, ld.so.cache).
pub fn runtime_of(binary: &Path) -> anyhow::Result<Runtime> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("cannot run ldd (glibc's libc-bin package) to list the binary's libraries")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // A static binary: ldd says so (and exits 1); it needs nothing else.
    if stdout.contains("not a dynamic executable")
        || stderr.contains("not a dynamic executable")
        || stdout.contains("statically linked")
    {
        return Ok(Runtime {
            interpreter: None,
            libraries: Vec::new(),
        });
    }
    if !output.status.success() {
        bail!(
            "ldd {} failed ({}): {}",
            binary.display(),
            output.status,
            stderr.trim()
        );
    }
    parse_ldd(&stdout).with_context(|| format!("reading `ldd {}`", binary.display()))
}

/// Parses ldd's output: `name => /path (0x...)` for libraries, `/path (0x...)` for the
/// interpreter, `name (0x...)` for the vDSO (provided by the kernel), `name => not found`.
pub fn parse_ldd(text: &str) -> anyhow::Result<Runtime> {
    let mut interpreter = None;
    let mut libraries = Vec::new();
    let mut missing = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some((name, rest)) = line.split_once("=>") {
            let rest = rest.trim();
            if rest.starts_with("not found") {
                missing.push(name.trim().to_string());
                continue;
            }
            let path = rest.split(" (").next().unwrap_or_default().trim();
            if path.is_empty() {
                // `linux-vdso.so.1 =>  (0x...)` on older glibc: the vDSO.
                continue;
            }
            libraries.push(PathBuf::from(path));
        } else {
            let path = line.split(" (").next().unwrap_or_default().trim();
            if path.starts_with('/') {
                interpreter = Some(PathBuf::from(path));
            }
        }
    }
    if !missing.is_empty() {
        bail!("shared libraries not found: {}", missing.join(", "));
    }
    Ok(Runtime {
        interpreter,
        libraries,
    })
}

/// The build context of the offline image: the Dockerfile, the binary, its loader and
/// libraries, and the minimal `/etc`.
pub fn context(binary: &Path) -> anyhow::Result<(BuildContext, Runtime)> {
    let binary = binary
        .canonicalize()
        .with_context(|| format!("cannot find the binary {}", binary.display()))?;
    let runtime = runtime_of(&binary)?;
    let mut ctx = BuildContext::new();
    ctx.add(
        "Dockerfile",
        Source::Bytes(DOCKERFILE.as_bytes().to_vec()),
        0o644,
    );
    ctx.add(
        &format!("rootfs/{BINARY_PATH}"),
        Source::File(binary),
        0o755,
    );
    let mut seen = std::collections::BTreeSet::new();
    for path in runtime.interpreter.iter().chain(&runtime.libraries) {
        let rel = path
            .strip_prefix("/")
            .with_context(|| format!("{} is not an absolute path", path.display()))?;
        if !seen.insert(rel.to_path_buf()) {
            continue;
        }
        let rel = rel.to_str().context("a library path is not UTF-8")?;
        // The content, not the symlink: the image has no other copy to point to.
        ctx.add(&format!("rootfs/{rel}"), Source::File(path.clone()), 0o755);
    }
    let passwd = format!(
        "root:x:0:0:root:/root:/sbin/nologin\n{USER}:x:{UID}:{UID}:zenkoctl:/var/lib/zenko:/sbin/nologin\n"
    );
    let group = format!("root:x:0:\n{USER}:x:{UID}:\n");
    ctx.add(
        "rootfs/etc/passwd",
        Source::Bytes(passwd.into_bytes()),
        0o644,
    );
    ctx.add("rootfs/etc/group", Source::Bytes(group.into_bytes()), 0o644);
    ctx.add(
        "rootfs/etc/nsswitch.conf",
        Source::Bytes(b"passwd: files\ngroup: files\nhosts: files dns\n".to_vec()),
        0o644,
    );
    ctx.add("rootfs/tmp", Source::Dir, 0o1777);
    // Copied with --chown to the user: the volumes' mount points.
    ctx.add("home/metadata", Source::Dir, 0o750);
    ctx.add("home/data", Source::Dir, 0o750);
    Ok((ctx, runtime))
}

/// True when `binary` (ELF64, little-endian) has a `.debug_info` section: an unstripped build,
/// several times the size of what it needs to run.
pub fn has_debug_info(binary: &Path) -> bool {
    let Ok(data) = std::fs::read(binary) else {
        return false;
    };
    let u16_at = |o: usize| {
        data.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |o: usize| {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
    };
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
    };
    // ELF magic, 64-bit, little-endian.
    if data.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1]) {
        return false;
    }
    let (Some(shoff), Some(shentsize), Some(shnum), Some(shstrndx)) =
        (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e))
    else {
        return false;
    };
    let section = |i: usize| shoff + i * shentsize;
    let Some(strtab) = u64_at(section(shstrndx) + 0x18) else {
        return false;
    };
    (0..shnum).any(|i| {
        u32_at(section(i))
            .and_then(|name| data.get(strtab + name..))
            .is_some_and(|name| name.starts_with(b".debug_info\0"))
    })
}

/// The executable to pack by default: the one running.
pub fn current_binary() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot tell where the running zenkoctl binary is")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd2b5e2000)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0d)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0c)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f0e)\n";
        let rt = parse_ldd(text).unwrap();
        assert_eq!(
            rt.interpreter.as_deref(),
            Some(Path::new("/lib64/ld-linux-x86-64.so.2"))
        );
        assert_eq!(
            rt.libraries,
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6")
            ]
        );
        let err = parse_ldd("\tlibfoo.so.1 => not found\n").unwrap_err();
        assert!(err.to_string().contains("libfoo.so.1"));
    }

    #[test]
    fn resolves_this_test_binary() {
        // The test executable is linked like zenkoctl: glibc, its loader, libgcc_s.
        let exe = std::env::current_exe().unwrap();
        let rt = runtime_of(&exe).unwrap();
        let interp = rt.interpreter.expect("a dynamically linked test binary");
        assert!(interp.exists(), "{}", interp.display());
        assert!(rt.libraries.iter().any(|l| l
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("libc.so")));
        // Tests are built with debug info; the stripped copy has none.
        assert!(has_debug_info(&exe));
        let stripped = tempfile::tempdir().unwrap();
        let copy = stripped.path().join("stripped");
        let status = Command::new("strip")
            .arg("-o")
            .arg(&copy)
            .arg(&exe)
            .status()
            .unwrap();
        assert!(status.success());
        assert!(!has_debug_info(&copy));
        assert!(!has_debug_info(Path::new("/etc/passwd")));
        let (ctx, _) = context(&exe).unwrap();
        let paths: Vec<&str> = ctx.entries().iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"Dockerfile"));
        assert!(paths.contains(&"rootfs/usr/local/bin/zenkoctl"));
        assert!(paths.contains(&"rootfs/etc/passwd"));
        let interp_entry = format!("rootfs{}", interp.display());
        assert!(paths.contains(&interp_entry.as_str()), "{paths:?}");
    }
}
