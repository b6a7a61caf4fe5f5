//! The README and the manual (`docs/`) as tests, so that they cannot drift from the binary:
//! every ```` ```console ```` block runs against the real `voyc-import` (with trycmd), and every
//! link between the pages resolves.
//!
//! Each page runs in a temporary folder of its own that holds a copy of `samples/`, as a user
//! would run the examples from the root of a checkout; nothing is written into the repository.
//! `TRYCMD=overwrite cargo test --test cli docs` writes the binary's output back into the pages
//! (check the diff: it keeps `[..]` and `...` only where they still match).

use std::path::{Path, PathBuf};

use crate::util::{Dir, samples};

/// What a user may have set for real runs: the examples run as a newcomer's would, without them.
const USER_SETTINGS: [&str; 4] = [
    "VOYC_TOKEN",
    "VOYC_ORG_ID",
    "VOYC_BASE_URL",
    "VOYC_STATE_DIR",
];

#[test]
fn every_console_example_gives_the_output_it_shows() {
    if USER_SETTINGS
        .iter()
        .any(|name| std::env::var_os(name).is_some())
    {
        // trycmd hands its own environment to every example and cannot take a variable away,
        // so this test runs again in a process of its own without them.
        let mut again = std::process::Command::new(std::env::current_exe().expect("the test"));
        again
            .args([
                "docs::every_console_example_gives_the_output_it_shows",
                "--exact",
                "--nocapture",
            ])
            .args(std::env::args().filter(|arg| arg.starts_with("trycmd=")));
        for name in USER_SETTINGS {
            again.env_remove(name);
        }
        let status = again
            .status()
            .expect("run the test again without the VOYC_* variables");
        assert!(status.success(), "the docs examples failed (output above)");
        return;
    }

    let dir = Dir::new();
    let cases = trycmd::TestCases::new();
    cases
        .register_bin("voyc-import", Path::new(env!("CARGO_BIN_EXE_voyc-import")))
        // clap wraps help at the terminal's width; the examples show it at 100 columns.
        .env("COLUMNS", "100")
        // An example that would serve until stopped fails instead of hanging the suite.
        .timeout(std::time::Duration::from_secs(60));
    let mut copies = Vec::new();
    for page in pages() {
        let copy = dir.join(page.file_name().expect("a file name"));
        assert!(
            !copy.exists(),
            "two pages are named {}: give one another name",
            copy.display()
        );
        std::fs::copy(&page, &copy).expect("copy the page");
        // trycmd runs a page's commands in the folder named after it with `.in`.
        copy_folder(&samples(), &copy.with_extension("in").join("samples"));
        eprintln!("{} runs as {}", shown(&page), copy.display());
        cases.case(&copy);
        copies.push((page, copy));
    }
    cases.run();

    if std::env::var_os("TRYCMD").is_some_and(|mode| mode == "overwrite") {
        for (page, copy) in copies {
            let updated = std::fs::read(&copy).expect("read the updated copy");
            if std::fs::read(&page).expect("read the page") != updated {
                std::fs::write(&page, updated).expect("write the page");
                eprintln!("updated {}", shown(&page));
            }
        }
    }
}

#[test]
fn every_console_example_runs_voyc_import() {
    // trycmd skips, and so passes, a command whose program it does not know (`curl`, `echo`,
    // `sqlite3`): such examples belong in ```sh or ```text blocks, which nobody mistakes for
    // checked ones.
    let mut commands = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read the page");
        for block in fenced_blocks(&text) {
            if block.info.split(',').next() != Some("console") {
                continue;
            }
            assert!(
                !block.info.split(',').any(|attr| attr.trim() == "ignore"),
                "{}:{}: a console block is checked, not ignored; make it ```text",
                shown(&page),
                block.line
            );
            for (offset, line) in block.lines.iter().enumerate() {
                let Some(command) = line.strip_prefix("$ ") else {
                    continue;
                };
                let program = command
                    .split_whitespace()
                    .find(|word| !word.contains('='))
                    .unwrap_or("");
                assert_eq!(
                    program,
                    "voyc-import",
                    "{}:{}: a console example runs voyc-import, not {program:?}; show it as ```sh or ```text",
                    shown(&page),
                    block.line + 1 + offset
                );
                commands += 1;
            }
        }
    }
    assert!(
        commands >= 20,
        "only {commands} checked commands in the docs"
    );
}

#[test]
fn every_link_between_the_pages_resolves() {
    let mut links = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read the page");
        for (line, target) in links_in(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            links += 1;
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let linked = if file.is_empty() {
                page.clone()
            } else {
                page.parent().expect("a folder").join(file)
            };
            assert!(
                linked.exists(),
                "{}:{line}: the link {target:?} names a file that does not exist",
                shown(&page)
            );
            if let Some(anchor) = anchor {
                let linked_text = std::fs::read_to_string(&linked).expect("read the linked page");
                assert!(
                    headings(&linked_text).iter().any(|h| slug(h) == anchor),
                    "{}:{line}: the link {target:?} names no heading of {}; its headings are {:?}",
                    shown(&page),
                    shown(&linked),
                    headings(&linked_text)
                        .iter()
                        .map(|h| slug(h))
                        .collect::<Vec<_>>()
                );
            }
        }
    }
    assert!(links >= 10, "only {links} links between the pages");
}

/// The README and every page of `docs/`, in a stable order.
fn pages() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("the docs folder")
        .map(|entry| entry.expect("a docs entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    pages.insert(0, root.join("README.md"));
    pages
}

/// A page's path as the repository names it, for messages.
fn shown(page: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    page.strip_prefix(root)
        .unwrap_or(page)
        .display()
        .to_string()
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the folder");
    for entry in std::fs::read_dir(from).expect("read the folder") {
        let entry = entry.expect("a folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("its type").is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// A fenced code block: its info string (`console`, `sh`, ...), the line its fence is on, and
/// the lines inside it.
struct Block<'a> {
    info: &'a str,
    line: usize,
    lines: Vec<&'a str>,
}

fn fenced_blocks(text: &str) -> Vec<Block<'_>> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match open.take() {
            None if fence => {
                open = Some(Block {
                    info: line.trim_start().trim_start_matches('`').trim(),
                    line: index + 1,
                    lines: Vec::new(),
                })
            }
            None => {}
            Some(block) if fence => blocks.push(block),
            Some(mut block) => {
                block.lines.push(line);
                open = Some(block);
            }
        }
    }
    blocks
}

/// The targets of the page's inline links `[text](target)`, outside code, with their lines.
fn links_in(text: &str) -> Vec<(usize, String)> {
    let mut links = Vec::new();
    let mut in_block = false;
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            continue;
        }
        let prose = without_code_spans(line);
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            links.push((index + 1, after[..end].to_string()));
            rest = &after[end..];
        }
    }
    links
}

fn without_code_spans(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// The page's headings, without their `#`s.
fn headings(text: &str) -> Vec<String> {
    let mut in_block = false;
    let mut headings = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
        } else if !in_block && line.starts_with('#') {
            headings.push(line.trim_start_matches('#').trim().to_string());
        }
    }
    headings
}

/// The anchor GitHub gives a heading: lower case, spaces as `-`, other punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}
