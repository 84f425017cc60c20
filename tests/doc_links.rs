//! Every relative link in the documentation resolves in a clone of the repository: the file or
//! folder it names exists inside the repository, and a `#anchor` names a heading of the target
//! Markdown file, spelled as GitHub spells it (its "slug").
//!
//! The documents checked are `README.md`, every `docs/*.md` and `bench/README.md`. Links to
//! other sites (`https:`, `mailto:`) are not fetched: a test that needs the network would fail
//! for reasons that have nothing to do with us. A link in a code block or in inline code is not
//! a link, so it is skipped, as GitHub skips it.

use std::collections::HashSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One `[text](target)` or `![alt](target)` found in a document, with its line number.
#[derive(Debug, PartialEq)]
struct Link {
    line: usize,
    target: String,
}

/// The documents whose links are checked, relative to the repository's root.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![PathBuf::from("README.md"), PathBuf::from("bench/README.md")];
    let mut in_docs: Vec<PathBuf> = fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("read docs/")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .map(|path| {
            path.strip_prefix(ROOT)
                .expect("inside the repository")
                .to_path_buf()
        })
        .collect();
    in_docs.sort();
    docs.extend(in_docs);
    docs
}

/// The links of a Markdown text, outside fenced code blocks and inline code.
fn links(markdown: &str) -> Vec<Link> {
    let mut found = Vec::new();
    let mut fenced = false;
    // Inline code may run on into the next line of its paragraph, never past a blank line.
    let mut in_code = false;
    for (index, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            in_code = false;
            continue;
        }
        if fenced || line.trim().is_empty() {
            in_code = false;
            continue;
        }
        for target in line_links(&without_inline_code(line, &mut in_code)) {
            found.push(Link {
                line: index + 1,
                target,
            });
        }
    }
    found
}

/// A line with its inline code (between backticks) left out; `in_code` says whether the line
/// starts inside a code span, and is left saying whether it ends inside one.
fn without_inline_code(line: &str, in_code: &mut bool) -> String {
    let mut text = String::new();
    for (i, part) in line.split('`').enumerate() {
        if i > 0 {
            *in_code = !*in_code;
        }
        if !*in_code {
            text.push_str(part);
            text.push(' ');
        }
    }
    text
}

/// The targets of every `](target)` in one line: the text up to the closing parenthesis,
/// without an optional title (`[x](a.md "title")`).
fn line_links(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find("](") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split_whitespace().next().unwrap_or("");
        targets.push(target.to_owned());
        rest = &rest[end + 1..];
    }
    targets
}

/// Whether a link leaves the repository's files: another site, or mail.
fn is_external(target: &str) -> bool {
    target.contains("://") || target.starts_with("mailto:")
}

/// GitHub's anchor for a heading's text: lowercase, spaces to hyphens, and every character
/// that is not a letter, a digit, `-` or `_` left out (so `Runtime faults: /control`
/// becomes `runtime-faults-control`).
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

/// The text a heading shows: link targets left out (`[a](b)` shows `a`).
fn heading_text(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    while let Some(start) = rest.find("](") {
        text.push_str(&rest[..start]);
        rest = &rest[start + 2..];
        match rest.find(')') {
            Some(end) => rest = &rest[end + 1..],
            None => rest = "",
        }
    }
    text.push_str(rest);
    text.replace('[', "")
}

/// Every anchor a Markdown text offers: one per heading (`#` to `######` outside code blocks),
/// a repeated slug numbered `-1`, `-2` as GitHub numbers it.
fn anchors(markdown: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if fenced || hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(heading_text(line[hashes..].trim()).trim());
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// A path with `.` and `..` resolved by hand, so that a link out of the repository
/// (`../shared/...`) is seen as one even when the file happens to exist on this machine.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Why one link of `document` (relative to the root) does not resolve, or `None` when it does.
fn problem(document: &Path, target: &str) -> Option<String> {
    let (file, anchor) = match target.split_once('#') {
        Some((file, anchor)) => (file, Some(anchor)),
        None => (target, None),
    };
    let relative = if file.is_empty() {
        document.to_path_buf()
    } else {
        let folder = document.parent().unwrap_or(Path::new(""));
        match normalize(&folder.join(file)) {
            Some(path) => path,
            None => return Some("leaves the repository".to_owned()),
        }
    };
    let absolute = Path::new(ROOT).join(&relative);
    if !absolute.exists() {
        return Some(format!("{} does not exist", relative.display()));
    }
    let anchor = anchor?;
    if relative.extension().is_none_or(|ext| ext != "md") {
        return Some(format!(
            "#{anchor} points into {}, which has no headings",
            relative.display()
        ));
    }
    let text = fs::read_to_string(&absolute).ok()?;
    if anchors(&text).contains(anchor) {
        None
    } else {
        Some(format!(
            "{} has no heading whose anchor is #{anchor}",
            relative.display()
        ))
    }
}

#[test]
fn every_relative_link_resolves_from_a_clone() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for document in documents() {
        let text = fs::read_to_string(Path::new(ROOT).join(&document))
            .unwrap_or_else(|e| panic!("read {}: {e}", document.display()));
        for link in links(&text) {
            if is_external(&link.target) {
                continue;
            }
            checked += 1;
            if let Some(why) = problem(&document, &link.target) {
                broken.push(format!(
                    "{}:{}: ({}) {why}",
                    document.display(),
                    link.line,
                    link.target
                ));
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} relative links found: is the reader broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_documents_exist() {
    let names: Vec<String> = documents()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    for expected in [
        "README.md",
        "bench/README.md",
        "docs/contract.md",
        "docs/patterns.md",
        "docs/testing.md",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
}

#[test]
fn links_are_found_outside_code_only() {
    let text = [
        "See [the contract](docs/contract.md) and ![a picture](docs/lab.png \"title\").",
        "Not `[code](nowhere.md)`, but [this](#flags) is. Code that runs `on",
        "[to the next line](nowhere.md)` is code too.",
        "",
        "```sh",
        "[inside](a/code/block.md)",
        "```",
    ]
    .join("\n");
    assert_eq!(
        links(&text),
        vec![
            Link {
                line: 1,
                target: "docs/contract.md".into()
            },
            Link {
                line: 1,
                target: "docs/lab.png".into()
            },
            Link {
                line: 2,
                target: "#flags".into()
            },
        ]
    );
}

#[test]
fn slugs_are_github_s() {
    assert_eq!(slug("Runtime faults: `/control`"), "runtime-faults-control");
    assert_eq!(slug("Deadlines (`X-Timeout-Ms`)"), "deadlines-x-timeout-ms");
    assert_eq!(slug("bench/waiting_calls.py"), "benchwaiting_callspy");
    assert_eq!(
        slug("When A fails: the patterns"),
        "when-a-fails-the-patterns"
    );
    assert_eq!(
        slug("What made it faster, and why"),
        "what-made-it-faster-and-why"
    );
}

#[test]
fn repeated_headings_are_numbered_and_code_is_not_a_heading() {
    let text = "# Title\n## Notes\n```sh\n# a comment\n```\n## Notes\n#not a heading\n";
    let found = anchors(text);
    let expected: HashSet<String> = ["title", "notes", "notes-1"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn a_broken_link_is_reported() {
    let readme = Path::new("README.md");
    assert_eq!(problem(readme, "docs/contract.md"), None);
    assert_eq!(
        problem(readme, "docs/nothing-here.md"),
        Some("docs/nothing-here.md does not exist".to_owned())
    );
    assert_eq!(
        problem(readme, "../shared/CONTRACT.md"),
        Some("leaves the repository".to_owned())
    );
    assert_eq!(
        problem(readme, "docs/contract.md#no-such-heading"),
        Some("docs/contract.md has no heading whose anchor is #no-such-heading".to_owned())
    );
    assert_eq!(
        problem(Path::new("bench/README.md"), "../docs/contract.md#flags"),
        None
    );
    assert!(problem(readme, "Cargo.toml#dependencies").is_some());
}
