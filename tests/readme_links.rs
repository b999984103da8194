//! Every repository path the user-facing documents name exists: README.md, docs/*.md and
//! deploy/README.md. A renamed file or a manifest that was never written (the README once named
//! `deploy/k8s/orchestrator.yaml`) fails here, with every such path and the file that names it.
//!
//! What counts as naming a path, outside fenced code blocks:
//! * a markdown link whose target is a relative path (`[x](docs/cli.md#ctrl-c-watch)`), resolved
//!   from the directory of the document; http(s) and mailto links are left alone, and the
//!   `#anchor` of a link to a markdown file must be one of its headings (GitHub's slugs);
//! * an inline code span that looks like a repository path: it starts with `crates/`,
//!   `scripts/`, `deploy/`, `docs/`, `tests/`, `proto/` or `.ci/`, or is a top-level file such as
//!   `compose.yaml`, resolved from the workspace root. A trailing `:line` and punctuation are
//!   dropped; spans with `<`, `*`, `{`, `$` or spaces are patterns or commands, not paths.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

/// The prefixes of code spans taken as repository paths.
const PATH_PREFIXES: &[&str] = &["crates/", "scripts/", "deploy/", "docs/", "tests/", "proto/", ".ci/"];
/// Top-level files a code span may name on their own.
const TOP_LEVEL_FILES: &[&str] = &[
    "compose.yaml",
    "Containerfile",
    ".containerignore",
    "orchestrator.example.toml",
    "Cargo.toml",
    "Cargo.lock",
    "rust-toolchain.toml",
    "clippy.toml",
    "rustfmt.toml",
    "README.md",
];
/// Paths the documents tell the reader to create, never committed (`deploy/.gitignore` keeps
/// them out of git): they name where local secret files go.
const MADE_BY_THE_READER: &[&str] = &["deploy/compose/", "deploy/compose"];

/// The workspace root: this crate's manifest is `tests/Cargo.toml`.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the orchestrator-tests crate sits in the workspace root")
        .to_path_buf()
}

/// The documents checked, relative to the root: README.md, deploy/README.md, docs/*.md.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut documents = vec![PathBuf::from("README.md"), PathBuf::from("deploy/README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists next to README.md")
        .map(|entry| entry.expect("a readable entry of docs/").file_name())
        .map(|name| Path::new("docs").join(name))
        .filter(|path| path.extension().is_some_and(|extension| extension == "md"))
        .collect();
    docs.sort();
    documents.extend(docs);
    documents
}

fn read(root: &Path, document: &Path) -> String {
    std::fs::read_to_string(root.join(document))
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", document.display()))
}

/// Whether `line` opens or closes a fenced code block.
fn is_fence(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("```") || line.starts_with("~~~")
}

/// The paragraphs of `text` outside fenced code blocks, each joined into one line (an inline
/// code span may continue on the next line of its paragraph, never into the next paragraph).
fn paragraphs(text: &str) -> Vec<String> {
    let mut paragraphs = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if is_fence(line) {
            fenced = !fenced;
        } else if !fenced && !line.trim().is_empty() {
            current.push(line.trim());
            continue;
        }
        if !current.is_empty() {
            paragraphs.push(current.join(" "));
            current.clear();
        }
    }
    if !current.is_empty() {
        paragraphs.push(current.join(" "));
    }
    paragraphs
}

/// The contents of the inline code spans of `paragraph`: a run of N backticks up to the next
/// run of exactly N (so ```` ```python ```` is one span); an unmatched run is literal text.
fn code_spans(paragraph: &str) -> Vec<&str> {
    let bytes = paragraph.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let open = i;
        while i < bytes.len() && bytes[i] == b'`' {
            i += 1;
        }
        let ticks = i - open;
        let mut j = i;
        while j < bytes.len() {
            if bytes[j] != b'`' {
                j += 1;
                continue;
            }
            let close = j;
            while j < bytes.len() && bytes[j] == b'`' {
                j += 1;
            }
            if j - close == ticks {
                // Backticks are ASCII, so both ends are character boundaries.
                spans.push(paragraph[i..close].trim());
                i = j;
                break;
            }
        }
    }
    spans
}

/// The targets of the markdown links of `paragraph` (`[text](target)`, up to the first space
/// or the closing parenthesis).
fn link_targets(paragraph: &str) -> Vec<&str> {
    let mut targets = Vec::new();
    let mut rest = paragraph;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(|c: char| c == ')' || c.is_whitespace()).unwrap_or(after.len());
        targets.push(&after[..end]);
        rest = &after[end..];
    }
    targets
}

/// The repository path a code span names, if it looks like one.
fn path_in_code(span: &str) -> Option<&str> {
    if span.is_empty() || span.contains(['<', '*', '{', '$']) || span.contains(char::is_whitespace) {
        return None;
    }
    let mut path = span.strip_prefix("./").unwrap_or(span);
    // `crates/server/src/main.rs:12`, `path/to/file.rs:12:5`
    while let Some((before, after)) = path.rsplit_once(':') {
        if after.is_empty() || !after.bytes().all(|b| b.is_ascii_digit()) {
            break;
        }
        path = before;
    }
    let path = path.trim_end_matches(['.', ',', ';', ':', ')', '…']);
    let named =
        PATH_PREFIXES.iter().any(|prefix| path.starts_with(prefix)) || TOP_LEVEL_FILES.contains(&path);
    named.then_some(path)
}

/// GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped, spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The anchors of the headings of a markdown text (a repeated heading gets `-1`, `-2`, …).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if is_fence(line) {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let hashes = line.bytes().take_while(|b| *b == b'#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let heading = line[hashes..].trim().trim_end_matches('#').trim_end();
        let slug = slug(heading);
        let count = seen.entry(slug.clone()).or_insert(0);
        anchors.insert(if *count == 0 { slug } else { format!("{slug}-{count}") });
        *count += 1;
    }
    anchors
}

/// `base/../x` → `x`, without asking the file system (a missing path must still be reported).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Every problem with the paths and anchors `document` names, one line each.
fn problems_of(root: &Path, document: &Path) -> Vec<String> {
    let text = read(root, document);
    let here = document.parent().unwrap_or(Path::new(""));
    let mut problems = Vec::new();
    for paragraph in paragraphs(&text) {
        for target in link_targets(&paragraph) {
            if target.is_empty() || ["http://", "https://", "mailto:"].iter().any(|s| target.starts_with(s)) {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let linked = if path.is_empty() { document.to_path_buf() } else { normalise(&here.join(path)) };
            if !root.join(&linked).exists() {
                problems.push(format!(
                    "{}: link ({target}) names {}, which does not exist",
                    document.display(),
                    linked.display()
                ));
                continue;
            }
            let is_markdown = linked.extension().is_some_and(|extension| extension == "md");
            if !anchor.is_empty() && is_markdown && !anchors(&read(root, &linked)).contains(anchor) {
                problems.push(format!(
                    "{}: link ({target}) names #{anchor}, which is no heading of {}",
                    document.display(),
                    linked.display()
                ));
            }
        }
        for span in code_spans(&paragraph) {
            let Some(path) = path_in_code(span) else { continue };
            if MADE_BY_THE_READER.contains(&path) {
                continue;
            }
            if !root.join(path).exists() {
                problems.push(format!("{}: `{span}` names {path}, which does not exist", document.display()));
            }
        }
    }
    problems
}

#[test]
fn every_path_and_anchor_the_documents_name_exists() {
    let root = root();
    let documents = documents(&root);
    assert!(documents.len() > 2, "docs/*.md found: {documents:?}");
    let problems: Vec<String> = documents.iter().flat_map(|document| problems_of(&root, document)).collect();
    assert!(problems.is_empty(), "{} missing path(s) or anchor(s):\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn the_readme_names_what_a_new_user_needs_first() {
    let readme = read(&root(), Path::new("README.md"));
    for needed in ["bash scripts/try-it.sh", "bash scripts/test.sh", "## Contents", "## Performance"] {
        assert!(readme.contains(needed), "README.md lacks {needed:?}");
    }
    assert!(
        !readme.contains("deploy/k8s/orchestrator.yaml"),
        "README.md names a manifest that does not exist"
    );
}

#[test]
fn the_checker_finds_paths_links_and_anchors() {
    let paragraph = "see [the CLI](docs/cli.md#ctrl-c-watch), `crates/server/src/main.rs:12`, \
                     ```` ```python ````, `deploy/k8s/<overlay>` and [Rust](https://rustup.rs)";
    assert_eq!(link_targets(paragraph), ["docs/cli.md#ctrl-c-watch", "https://rustup.rs"]);
    let spans = code_spans(paragraph);
    assert_eq!(spans, ["crates/server/src/main.rs:12", "```python", "deploy/k8s/<overlay>"]);
    let paths: Vec<&str> = spans.iter().filter_map(|span| path_in_code(span)).collect();
    assert_eq!(paths, ["crates/server/src/main.rs"]);
    assert_eq!(path_in_code("compose.yaml."), Some("compose.yaml"));
    assert_eq!(path_in_code("target/test-run.log"), None);
    assert_eq!(path_in_code("cargo test --workspace"), None);

    assert_eq!(slug("Ctrl-C, watch"), "ctrl-c-watch");
    assert_eq!(slug("How a deliberation runs"), "how-a-deliberation-runs");
    assert_eq!(
        slug("What the early stop and the cascade cost, on a fake model"),
        "what-the-early-stop-and-the-cascade-cost-on-a-fake-model"
    );
    let text = "# A\n```\n# not a heading\n```\n## compose.yaml\n## A\n";
    assert_eq!(anchors(text), BTreeSet::from(["a".to_owned(), "a-1".to_owned(), "composeyaml".to_owned()]));
    assert_eq!(normalise(Path::new("docs/../README.md")), PathBuf::from("README.md"));
    assert_eq!(paragraphs("one `crates/\nserver`\n\n```\n`x`\n```\ntwo"), ["one `crates/ server`", "two"]);
}
