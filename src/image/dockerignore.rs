//! `.dockerignore`, applied on the client side as the docker CLI does.
//!
//! The classic `/build` endpoint never reads `.dockerignore` to filter the context (it only
//! uses it to decide whether to drop the Dockerfile itself), so whatever the client puts in the
//! tar is what the build sees. The semantics follow moby's `patternmatcher`:
//! - one pattern per line; a line starting with `#` is a comment; blank lines are skipped;
//! - leading and trailing whitespace is trimmed, the pattern is cleaned (`./a/../b` -> `b`)
//!   and a leading `/` is dropped: patterns are relative to the context root;
//! - `*` matches any run of characters except `/`, `?` one such character, `[...]` a class
//!   (`[!...]` or `[^...]` negated), `\` escapes the next character, and `**` any number of
//!   directories (also none: `**/x` matches `x`);
//! - a pattern that matches a directory also matches everything below it;
//! - `!pattern` re-includes what an earlier pattern excluded; the last matching pattern wins.

use std::path::Path;

use anyhow::Context as _;

/// The parsed patterns of one `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Dockerignore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    tokens: Vec<Token>,
    exclusion: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(char),
    /// `?`: one character other than `/`.
    AnyChar,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**`: any run of characters, `/` included.
    DoubleStar,
    /// `**/`: nothing, or any run of characters ending with `/`.
    DirStar,
    /// `[...]`: ranges `(from, to)`, possibly negated; never matches `/`.
    Class(Vec<(char, char)>, bool),
}

impl Dockerignore {
    /// Reads `<context>/.dockerignore`; no file means no patterns.
    pub fn load(context: &Path) -> anyhow::Result<Dockerignore> {
        let path = context.join(".dockerignore");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                Dockerignore::parse(&text).with_context(|| format!("in {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Dockerignore::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<Dockerignore> {
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let exclusion = pattern.starts_with('!');
            if exclusion {
                pattern = pattern[1..].trim();
                if pattern.is_empty() {
                    anyhow::bail!("line {}: `!` without a pattern", n + 1);
                }
            }
            let cleaned = clean(pattern);
            let tokens = tokenize(&cleaned)
                .with_context(|| format!("line {}: invalid pattern {pattern:?}", n + 1))?;
            patterns.push(Pattern {
                text: cleaned,
                tokens,
                exclusion,
            });
        }
        Ok(Dockerignore { patterns })
    }

    /// True when the file or directory at `path` (relative, `/`-separated) is left out.
    pub fn excludes(&self, path: &str) -> bool {
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut matched = false;
        for pattern in &self.patterns {
            // An inclusion cannot change an already excluded path, nor an exclusion a kept one.
            if pattern.exclusion != matched {
                continue;
            }
            let hit = matches(&pattern.tokens, path)
                || parents
                    .iter()
                    .any(|parent| matches(&pattern.tokens, parent));
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// True when no `!` pattern exists: an excluded directory can then be skipped whole.
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// The patterns, as cleaned (for messages).
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|p| p.text.as_str())
    }
}

/// Go's `filepath.Clean` on a `/`-separated pattern, then the leading `/` dropped.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                // Above the root is the root, as for a rooted path in Go.
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

fn tokenize(pattern: &str) -> anyhow::Result<Vec<Token>> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                if chars.get(i + 2) == Some(&'/') {
                    tokens.push(Token::DirStar);
                    i += 3;
                } else {
                    tokens.push(Token::DoubleStar);
                    i += 2;
                    // `***` is `**` followed by `*`, which `**` already covers.
                    while chars.get(i) == Some(&'*') {
                        i += 1;
                    }
                }
            }
            '*' => {
                tokens.push(Token::Star);
                i += 1;
            }
            '?' => {
                tokens.push(Token::AnyChar);
                i += 1;
            }
            '\\' => {
                let c = *chars
                    .get(i + 1)
                    .context("a trailing `\\` escapes nothing")?;
                tokens.push(Token::Literal(c));
                i += 2;
            }
            '[' => {
                let (token, next) = class(&chars, i)?;
                tokens.push(token);
                i = next;
            }
            c => {
                tokens.push(Token::Literal(c));
                i += 1;
            }
        }
    }
    Ok(tokens)
}

/// Parses `[...]` starting at `start`; returns the token and the index after `]`.
fn class(chars: &[char], start: usize) -> anyhow::Result<(Token, usize)> {
    let mut i = start + 1;
    let negated = matches!(chars.get(i), Some('!') | Some('^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *chars.get(i).context("unterminated `[` class")?;
        if c == ']' && !first {
            return Ok((Token::Class(ranges, negated), i + 1));
        }
        first = false;
        let lo = if c == '\\' {
            i += 1;
            *chars.get(i).context("unterminated `[` class")?
        } else {
            c
        };
        i += 1;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']') {
            let mut hi = chars[i + 1];
            i += 2;
            if hi == '\\' {
                hi = *chars.get(i).context("unterminated `[` class")?;
                i += 1;
            }
            if hi < lo {
                anyhow::bail!("bad range {lo}-{hi} in a `[` class");
            }
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
}

fn matches(tokens: &[Token], path: &str) -> bool {
    let chars: Vec<char> = path.chars().collect();
    match_from(tokens, &chars)
}

fn match_from(tokens: &[Token], s: &[char]) -> bool {
    let Some((token, rest)) = tokens.split_first() else {
        return s.is_empty();
    };
    match token {
        Token::Literal(c) => s.first() == Some(c) && match_from(rest, &s[1..]),
        Token::AnyChar => s.first().is_some_and(|c| *c != '/') && match_from(rest, &s[1..]),
        Token::Class(ranges, negated) => {
            s.first().is_some_and(|c| {
                *c != '/' && (ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negated)
            }) && match_from(rest, &s[1..])
        }
        Token::Star => {
            let run = s.iter().take_while(|c| **c != '/').count();
            (0..=run).any(|n| match_from(rest, &s[n..]))
        }
        Token::DoubleStar => (0..=s.len()).any(|n| match_from(rest, &s[n..])),
        Token::DirStar => {
            match_from(rest, s)
                || s.iter()
                    .enumerate()
                    .filter(|(_, c)| **c == '/')
                    .any(|(i, _)| match_from(rest, &s[i + 1..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> Dockerignore {
        Dockerignore::parse(text).unwrap()
    }

    #[test]
    fn plain_names_and_their_contents() {
        let d = ignore("target\n.git\n# a comment\n\n  *.log  \n");
        assert!(d.excludes("target"));
        assert!(d.excludes("target/debug/zenkoctl"));
        assert!(d.excludes(".git/HEAD"));
        assert!(d.excludes("build.log"));
        // `*` does not cross directories.
        assert!(!d.excludes("logs/build.log"));
        assert!(!d.excludes("src/main.rs"));
        assert!(!d.excludes("targets"));
        assert!(!d.excludes("# a comment"));
    }

    #[test]
    fn cleaning_and_rooting() {
        let d = ignore("/docs/../target/\n./a/./b\n");
        assert!(d.excludes("target/x"));
        assert!(d.excludes("a/b"));
        assert!(!d.excludes("docs/x"));
    }

    #[test]
    fn double_star() {
        let d = ignore("**/*.tmp\nsrc/**/gen\n");
        assert!(d.excludes("a.tmp"));
        assert!(d.excludes("x/y/z.tmp"));
        assert!(d.excludes("src/gen"));
        assert!(d.excludes("src/a/b/gen/file.rs"));
        assert!(!d.excludes("src/generated"));
        let all = ignore("**\n!keep\n");
        assert!(all.excludes("anything/at/all"));
        assert!(!all.excludes("keep"));
    }

    #[test]
    fn exceptions_last_match_wins() {
        let d = ignore("*.md\n!README.md\nREADME*.md\n");
        assert!(d.excludes("CHANGES.md"));
        assert!(
            d.excludes("README.md"),
            "the later README*.md excludes it again"
        );
        let d = ignore("docs\n!docs/keep.txt\n");
        assert!(d.excludes("docs/other.txt"));
        assert!(!d.excludes("docs/keep.txt"));
        assert!(d.has_exclusions());
        assert!(!ignore("a\n").has_exclusions());
    }

    #[test]
    fn classes_escapes_and_single_chars() {
        let d = ignore("file[0-9].txt\nx[!a]y\n\\*literal\nq?.rs\n");
        assert!(d.excludes("file7.txt"));
        assert!(!d.excludes("filea.txt"));
        assert!(d.excludes("xby"));
        assert!(!d.excludes("xay"));
        assert!(!d.excludes("x/y"), "a class never matches a separator");
        assert!(d.excludes("*literal"));
        assert!(!d.excludes("aliteral"));
        assert!(d.excludes("q1.rs"));
        assert!(!d.excludes("q/.rs"));
    }

    #[test]
    fn invalid_patterns_name_their_line() {
        let err = Dockerignore::parse("ok\n[abc\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
        assert!(Dockerignore::parse("!\n").is_err());
        assert!(Dockerignore::parse("a\\").is_err());
    }
}
