//! The `snapshot --json` contract in README.md ("JSON output") against real output: every field
//! the README lists is in a real snapshot of the C blocker or a Go program (with `--syscalls`,
//! goroutines and stacks), and every field a real snapshot has is in the README. Fields may be
//! added, never renamed: a rename fails the first check, an undocumented addition the second.

use std::collections::BTreeSet;

use parkscope_tests::{Blocker, GoTarget, run_parkscope, workspace_root};
use serde_json::Value;

/// The README's JSON block, as the set of key paths it documents (`threads[].syscall.fd`).
fn documented_paths() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let section = readme.split("### JSON output").nth(1).expect("README has a \"### JSON output\" section");
    let block = section.split("```").nth(1).expect("a ``` block in the JSON output section");
    let tokens = tokenize(block);
    let mut parser = Parser { tokens, at: 0, paths: BTreeSet::new() };
    parser.value("");
    assert_eq!(parser.at, parser.tokens.len(), "README JSON block: trailing text after the top-level object");
    parser.paths
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Word,
    Punct(char),
}

/// Strings, punctuation, and bare words (types such as `int`, prose such as "same as ...").
fn tokenize(text: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let s: String = chars.by_ref().take_while(|&c| c != '"').collect();
                out.push(Tok::Str(s));
            }
            '{' | '}' | '[' | ']' | ':' | ',' | '|' => out.push(Tok::Punct(c)),
            c if c.is_whitespace() => {}
            _ => {
                while chars.peek().is_some_and(|c| !"{}[]:,|\" \n".contains(*c)) {
                    chars.next();
                }
                if out.last() != Some(&Tok::Word) {
                    out.push(Tok::Word);
                }
            }
        }
    }
    out
}

struct Parser {
    tokens: Vec<Tok>,
    at: usize,
    paths: BTreeSet<String>,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at)
    }

    fn eat(&mut self, p: char) -> bool {
        let hit = self.peek() == Some(&Tok::Punct(p));
        self.at += usize::from(hit);
        hit
    }

    /// A value: alternatives separated by `|` (objects, arrays, enum strings, bare words).
    fn value(&mut self, path: &str) {
        loop {
            match self.peek().cloned() {
                Some(Tok::Punct('{')) => self.object(path),
                Some(Tok::Punct('[')) => {
                    self.at += 1;
                    self.value(&format!("{path}[]"));
                    assert!(self.eat(']'), "README JSON block: unclosed [ at {path}");
                }
                Some(Tok::Str(_) | Tok::Word) => self.at += 1,
                other => panic!("README JSON block: unexpected {other:?} in the value of {path}"),
            }
            if !self.eat('|') {
                return;
            }
        }
    }

    /// `{"key", "key": value, ...}`; `{prose}` (e.g. "same as a thread's syscall") is skipped.
    fn object(&mut self, path: &str) {
        assert!(self.eat('{'));
        if self.peek() == Some(&Tok::Word) {
            while !self.eat('}') {
                self.at += 1;
            }
            return;
        }
        loop {
            let Some(Tok::Str(key)) = self.peek().cloned() else {
                panic!("README JSON block: expected a key in {path}, found {:?}", self.peek())
            };
            self.at += 1;
            let child = if path.is_empty() { key } else { format!("{path}.{key}") };
            self.paths.insert(child.clone());
            if self.eat(':') {
                self.value(&child);
            }
            if self.eat('}') {
                return;
            }
            assert!(self.eat(','), "README JSON block: expected , or }} after {child}");
        }
    }
}

/// Every key path of a real JSON value, the README's way (`[]` for array elements).
fn real_paths(v: &Value, path: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                out.insert(p.clone());
                real_paths(child, &p, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                real_paths(item, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

/// Whether `path`'s parent occurs in the real output with something to hold it (a non-null
/// object or a non-empty array): only then can the field be checked.
fn parent_seen(path: &str, real: &BTreeSet<String>, non_empty: &BTreeSet<String>) -> bool {
    match path.rsplit_once('.') {
        None => true,
        Some((parent, _)) => real.contains(parent.trim_end_matches("[]")) && non_empty.contains(parent),
    }
}

/// Paths whose value is a non-null object or a non-empty array (`a[]` for an array's elements).
fn non_empty_paths(v: &Value, path: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            out.insert(path.to_owned());
            for (k, child) in map {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                non_empty_paths(child, &p, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                non_empty_paths(item, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

/// "goroutines[].syscall" documents its fields as "same as a thread's syscall".
fn same_as_thread_syscall(path: &str) -> Option<String> {
    path.strip_prefix("goroutines[].syscall.").map(|rest| format!("threads[].syscall.{rest}"))
}

#[test]
fn readme_json_fields_match_real_snapshots() {
    let documented = documented_paths();
    assert!(documented.contains("threads[].syscall.fd_desc"), "parser lost nested keys: {documented:#?}");
    assert!(documented.contains("stalls[].activity.fd"), "parser lost alternative objects: {documented:#?}");

    let blocker = Blocker::start(&[]);
    let go = GoTarget::start("parked-go1.27", &["-n", "3"], &[], false);
    let mut real = BTreeSet::new();
    let mut non_empty = BTreeSet::new();
    for pid in [blocker.pid, go.pid] {
        let out =
            run_parkscope(&["snapshot", "-p", &pid.to_string(), "--window", "300ms", "--syscalls", "--json"]);
        out.assert_code(0);
        let v = out.json();
        real_paths(&v, "", &mut real);
        non_empty_paths(&v, "", &mut non_empty);
    }

    let undocumented: Vec<&String> = real
        .iter()
        .filter(|p| !documented.contains(*p))
        .filter(|p| !same_as_thread_syscall(p).is_some_and(|t| documented.contains(&t)))
        .collect();
    assert!(undocumented.is_empty(), "fields in real output that README.md does not list: {undocumented:#?}");

    let missing: Vec<&String> =
        documented.iter().filter(|p| parent_seen(p, &real, &non_empty) && !real.contains(*p)).collect();
    assert!(missing.is_empty(), "fields README.md lists that real output lacks: {missing:#?}");
    // The fields the two targets must exercise, so the check above is not vacuous.
    for p in ["threads[].syscall.fd_desc", "goroutines[].netpoll.fd", "runtime.layout", "stacks[][].function"]
    {
        assert!(real.contains(p), "the targets did not exercise {p}");
    }
}
