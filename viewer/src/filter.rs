//! The `/` filter language: `syscall=read blocked>1s fd~tcp wait="chan receive"`. A filter is
//! whitespace-separated terms that must all hold; a term is `field op value`, or a bare word
//! that any text field may contain. Parsing is a small hand-written scanner with positions, so
//! a mistake is shown as "at column N: what was expected".
//!
//! Grammar:
//! ```text
//! filter := term*
//! term   := field op value | value
//! field  := tid | name | state | role | syscall | class | fd | blocked | waker | goid | wait | m | func | task
//! op     := "=" | "!=" | "~" | "!~" | ">" | ">=" | "<" | "<="
//! value  := bare | '"' ( [^"\\] | '\"' | '\\' )* '"'
//! ```
//! Text compares ignore ASCII case; `~` is "contains". `blocked` takes durations (`1s`, `500ms`,
//! `2m`, `1.5s`); `tid`, `goid`, `waker`, `m`, `task` take integers; `fd` is the fd number with
//! `=`/`<`/`>` and an integer, its description otherwise (`fd~tcp`, `fd~pipe`). An item without
//! the field (a running thread has no syscall) fails every operator but the negated ones. A
//! field with several values (the functions of a stack, the fds a task waits on) holds when
//! one of them does (`!=`: when none is the value).

use std::borrow::Cow;
use std::fmt;

/// Longest filter accepted (the input line is typed by a person; this bounds the parser).
pub const MAX_FILTER_LEN: usize = 1024;

/// A field a term can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Tid,
    Name,
    State,
    Role,
    Syscall,
    Class,
    Fd,
    Blocked,
    Waker,
    Goid,
    Wait,
    M,
    Func,
    Task,
}

/// What kind of value a field holds, which decides the operators it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    Duration,
    /// An fd: its number (integer compares) or its description (text compares).
    Fd,
}

impl Field {
    const ALL: [(&'static str, Field); 14] = [
        ("tid", Field::Tid),
        ("name", Field::Name),
        ("state", Field::State),
        ("role", Field::Role),
        ("syscall", Field::Syscall),
        ("class", Field::Class),
        ("fd", Field::Fd),
        ("blocked", Field::Blocked),
        ("waker", Field::Waker),
        ("goid", Field::Goid),
        ("wait", Field::Wait),
        ("m", Field::M),
        ("func", Field::Func),
        ("task", Field::Task),
    ];

    fn parse(name: &str) -> Option<Field> {
        Field::ALL.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|&(_, f)| f)
    }

    fn kind(self) -> Kind {
        match self {
            Field::Tid | Field::Waker | Field::Goid | Field::M | Field::Task => Kind::Integer,
            Field::Blocked => Kind::Duration,
            Field::Fd => Kind::Fd,
            _ => Kind::Text,
        }
    }

    pub fn name(self) -> &'static str {
        Field::ALL.iter().find(|(_, f)| *f == self).map_or("?", |(n, _)| n)
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Contains,
    NotContains,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn is_negated(self) -> bool {
        matches!(self, Op::Ne | Op::NotContains)
    }

    fn is_ordering(self) -> bool {
        matches!(self, Op::Gt | Op::Ge | Op::Lt | Op::Le)
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Contains => "~",
            Op::NotContains => "!~",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }
}

/// The value of a term, already converted to the field's kind.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Number(u64),
}

#[derive(Debug, Clone, PartialEq)]
enum Term {
    Compare {
        field: Field,
        op: Op,
        value: Value,
    },
    /// A bare word: some text field of the item contains it.
    Word(String),
}

/// A parsed filter; the empty filter matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    terms: Vec<Term>,
}

/// Why a filter did not parse: the column (1-based, in characters) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub column: usize,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at column {}: {}", self.column, self.message)
    }
}

/// What an item (a thread, a goroutine, a task) offers to the filter.
pub trait Subject {
    /// The text of a text field (or an fd's description; several values one per line); None when
    /// the item lacks it.
    fn text(&self, field: Field) -> Option<Cow<'_, str>>;
    /// The value of an integer field, an fd's number, or a duration in nanoseconds.
    fn number(&self, field: Field) -> Option<u64>;
    /// Every text field, for bare words.
    fn words(&self, visit: &mut dyn FnMut(&str) -> bool) -> bool;
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Parses `input` (see the module's grammar).
    pub fn parse(input: &str) -> Result<Filter, FilterError> {
        if input.len() > MAX_FILTER_LEN {
            return Err(FilterError { column: 1, message: format!("longer than {MAX_FILTER_LEN} bytes") });
        }
        let mut scanner = Scanner { chars: input.char_indices().collect(), pos: 0 };
        let mut terms = Vec::new();
        loop {
            scanner.skip_space();
            if scanner.at_end() {
                return Ok(Filter { terms });
            }
            terms.push(scanner.term()?);
        }
    }

    /// Whether a term compares `field`.
    pub fn uses(&self, field: Field) -> bool {
        self.terms.iter().any(|t| matches!(t, Term::Compare { field: f, .. } if *f == field))
    }

    /// Whether every term compares `field` (and there is at least one).
    pub fn only_uses(&self, field: Field) -> bool {
        !self.terms.is_empty()
            && self.terms.iter().all(|t| matches!(t, Term::Compare { field: f, .. } if *f == field))
    }

    /// Whether every term holds for `item`.
    pub fn matches(&self, item: &dyn Subject) -> bool {
        self.terms.iter().all(|t| term_matches(t, item))
    }
}

fn term_matches(term: &Term, item: &dyn Subject) -> bool {
    match term {
        Term::Word(w) => item.words(&mut |text| contains_ignore_case(text, w)),
        Term::Compare { field, op, value } => {
            let held = match (field.kind(), value) {
                (Kind::Integer | Kind::Duration | Kind::Fd, Value::Number(n)) => {
                    item.number(*field).map(|v| compare(v, *op, *n))
                }
                // A field with several values (a stack's functions, the fds a task waits on)
                // gives them one per line: `=` holds when one of them is the value.
                (_, Value::Text(t)) => item.text(*field).map(|v| match op {
                    Op::Eq | Op::Ne => v.split('\n').any(|one| one.eq_ignore_ascii_case(t)),
                    _ => contains_ignore_case(&v, t),
                }),
                // The parser gives text fields text values only.
                (Kind::Text, Value::Number(_)) => None,
            };
            match held {
                Some(h) if op.is_negated() => !h,
                Some(h) => h,
                None => op.is_negated(),
            }
        }
    }
}

fn compare(v: u64, op: Op, n: u64) -> bool {
    match op {
        Op::Eq | Op::Ne | Op::Contains | Op::NotContains => v == n,
        Op::Gt => v > n,
        Op::Ge => v >= n,
        Op::Lt => v < n,
        Op::Le => v <= n,
    }
}

/// Case-insensitive (ASCII) substring test without allocating.
pub fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.is_empty() || (n.len() <= h.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n)))
}

struct Scanner {
    chars: Vec<(usize, char)>,
    pos: usize,
}

impl Scanner {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|&(_, c)| c)
    }

    fn column(&self) -> usize {
        self.pos + 1
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn error<T>(&self, column: usize, message: impl Into<String>) -> Result<T, FilterError> {
        Err(FilterError { column, message: message.into() })
    }

    /// One term: a field name followed by an operator, or a bare word.
    fn term(&mut self) -> Result<Term, FilterError> {
        let start = self.column();
        if self.peek() == Some('"') {
            return Ok(Term::Word(self.quoted()?));
        }
        let word_start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        let name: String = self.chars[word_start..self.pos].iter().map(|&(_, c)| c).collect();
        let Some(op) = self.op() else {
            // Not `field op ...`: the whole run up to the next space is a bare word.
            while self.peek().is_some_and(|c| !c.is_whitespace() && c != '"') {
                self.pos += 1;
            }
            if self.peek() == Some('"') {
                return self.error(self.column(), "a quote may only start a value");
            }
            let word: String = self.chars[word_start..self.pos].iter().map(|&(_, c)| c).collect();
            return Ok(Term::Word(word));
        };
        if name.is_empty() {
            return self.error(start, format!("expected a field name before `{}`", op.as_str()));
        }
        let Some(field) = Field::parse(&name) else {
            let known: Vec<&str> = Field::ALL.iter().map(|(n, _)| *n).collect();
            return self.error(start, format!("unknown field `{name}` (fields: {})", known.join(" ")));
        };
        let value_column = self.column();
        let text = match self.peek() {
            Some('"') => self.quoted()?,
            Some(c) if !c.is_whitespace() => self.bare(),
            _ => return self.error(value_column, format!("expected a value after `{name}{}`", op.as_str())),
        };
        let value = match field.kind() {
            Kind::Text if op.is_ordering() => {
                return self.error(
                    value_column - op.as_str().len(),
                    format!(
                        "`{}` compares numbers and durations; `{name}` is text (use = != ~ !~)",
                        op.as_str()
                    ),
                );
            }
            Kind::Text => Value::Text(text),
            Kind::Integer if matches!(op, Op::Contains | Op::NotContains) => {
                return self.error(
                    value_column - op.as_str().len(),
                    format!("`{name}` is a number: use = != > >= < <="),
                );
            }
            Kind::Integer => match text.parse::<u64>() {
                Ok(n) => Value::Number(n),
                Err(_) => {
                    return self.error(value_column, format!("`{name}` takes an integer, not `{text}`"));
                }
            },
            Kind::Duration if matches!(op, Op::Contains | Op::NotContains) => {
                return self.error(
                    value_column - op.as_str().len(),
                    format!("`{name}` is a duration: use = != > >= < <="),
                );
            }
            Kind::Duration => match parse_duration(&text) {
                Some(ns) => Value::Number(ns),
                None => {
                    return self.error(
                        value_column,
                        format!("`{name}` takes a duration like 1s, 500ms, 2m, 1.5s, not `{text}`"),
                    );
                }
            },
            Kind::Fd => match (op, text.parse::<u64>()) {
                (Op::Contains | Op::NotContains, _) => Value::Text(text),
                (_, Ok(n)) => Value::Number(n),
                (o, Err(_)) if o.is_ordering() => {
                    return self
                        .error(value_column, format!("`fd{}` takes an fd number, not `{text}`", o.as_str()));
                }
                (_, Err(_)) => Value::Text(text),
            },
        };
        match self.peek() {
            Some(c) if !c.is_whitespace() => {
                self.error(self.column(), "expected a space between terms (quote values with spaces)")
            }
            _ => Ok(Term::Compare { field, op, value }),
        }
    }

    fn op(&mut self) -> Option<Op> {
        let two = |s: &Scanner, a: char, b: char| {
            s.peek() == Some(a) && s.chars.get(s.pos + 1).map(|p| p.1) == Some(b)
        };
        let (op, len) = if two(self, '!', '=') {
            (Op::Ne, 2)
        } else if two(self, '!', '~') {
            (Op::NotContains, 2)
        } else if two(self, '>', '=') {
            (Op::Ge, 2)
        } else if two(self, '<', '=') {
            (Op::Le, 2)
        } else {
            match self.peek()? {
                '=' => (Op::Eq, 1),
                '~' => (Op::Contains, 1),
                '>' => (Op::Gt, 1),
                '<' => (Op::Lt, 1),
                _ => return None,
            }
        };
        self.pos += len;
        Some(op)
    }

    fn bare(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(|c| !c.is_whitespace() && c != '"') {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().map(|&(_, c)| c).collect()
    }

    /// A double-quoted string; `\"` and `\\` are the escapes.
    fn quoted(&mut self) -> Result<String, FilterError> {
        let open = self.column();
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return self.error(open, "unterminated quote"),
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ ('"' | '\\')) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        _ => return self.error(self.column(), "only \\\" and \\\\ are escapes"),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

/// `1s`, `500ms`, `1.5s`, `2m`, `1h`, `100us`, `10ns` as nanoseconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let scale: f64 = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return None,
    };
    let n: f64 = number.parse().ok()?;
    let ns = n * scale;
    (ns.is_finite() && ns >= 0.0 && ns < u64::MAX as f64).then_some(ns as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread-like item for the tests.
    struct Item {
        name: &'static str,
        syscall: Option<&'static str>,
        fd: Option<(u64, &'static str)>,
        blocked_ns: Option<u64>,
        wait: Option<&'static str>,
        tid: u64,
    }

    impl Subject for Item {
        fn text(&self, field: Field) -> Option<Cow<'_, str>> {
            match field {
                Field::Name => Some(self.name.into()),
                Field::Syscall => self.syscall.map(Into::into),
                Field::Fd => self.fd.map(|f| f.1.into()),
                Field::Wait => self.wait.map(Into::into),
                _ => None,
            }
        }
        fn number(&self, field: Field) -> Option<u64> {
            match field {
                Field::Tid => Some(self.tid),
                Field::Fd => self.fd.map(|f| f.0),
                Field::Blocked => self.blocked_ns,
                _ => None,
            }
        }
        fn words(&self, visit: &mut dyn FnMut(&str) -> bool) -> bool {
            [Some(self.name), self.syscall, self.fd.map(|f| f.1), self.wait].into_iter().flatten().any(visit)
        }
    }

    const READER: Item = Item {
        name: "pipe-reader",
        syscall: Some("read"),
        fd: Some((5, "pipe:[1234]")),
        blocked_ns: Some(3_000_000_000),
        wait: None,
        tid: 101,
    };
    const ACCEPTOR: Item = Item {
        name: "acceptor",
        syscall: Some("accept4"),
        fd: Some((7, "tcp 127.0.0.1:8080 LISTEN")),
        blocked_ns: Some(500_000_000),
        wait: None,
        tid: 102,
    };
    const RUNNER: Item =
        Item { name: "spinner", syscall: None, fd: None, blocked_ns: None, wait: None, tid: 103 };
    const PARKED: Item = Item {
        name: "",
        syscall: None,
        fd: None,
        blocked_ns: Some(60_000_000_000),
        wait: Some("chan receive"),
        tid: 0,
    };

    fn m(filter: &str, item: &Item) -> bool {
        Filter::parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}")).matches(item)
    }

    #[test]
    fn the_issue_example_parses_and_matches() {
        let f = r#"syscall=read blocked>1s fd~pipe wait="chan receive""#;
        let parsed = Filter::parse(f).unwrap();
        assert_eq!(parsed.terms.len(), 4);
        assert!(!parsed.matches(&READER), "no wait reason on a thread");
        assert!(m("syscall=read blocked>1s fd~pipe", &READER));
        assert!(!m("syscall=read blocked>1s fd~pipe", &ACCEPTOR));
        assert!(m(r#"wait="chan receive" blocked>=1m"#, &PARKED));
        assert!(!m(r#"wait="chan" "#, &PARKED), "= is whole-value");
        assert!(m("wait~CHAN", &PARKED), "~ ignores case");
    }

    #[test]
    fn operators() {
        assert!(m("blocked>=3s", &READER));
        assert!(!m("blocked>3s", &READER));
        assert!(m("blocked<1s", &ACCEPTOR));
        assert!(m("blocked<=500ms", &ACCEPTOR));
        assert!(m("blocked>1.5s", &READER));
        assert!(m("syscall!=read", &ACCEPTOR));
        assert!(m("syscall!=read", &RUNNER), "a missing field satisfies a negation");
        assert!(!m("syscall=read", &RUNNER), "and fails a plain compare");
        assert!(m("fd!~tcp", &READER));
        assert!(m("fd=5", &READER), "an integer compares the fd number");
        assert!(m("fd>6", &ACCEPTOR));
        assert!(m("fd~tcp", &ACCEPTOR));
        assert!(m("tid=102", &ACCEPTOR));
        assert!(m("tid>=102 tid<103", &ACCEPTOR));
        assert!(!m("tid>=102 tid<103", &READER));
    }

    #[test]
    fn bare_words_search_every_text_field() {
        assert!(m("pipe", &READER));
        assert!(m("ACCEPT", &ACCEPTOR));
        assert!(!m("pipe", &ACCEPTOR));
        assert!(m(r#""127.0.0.1:8080 LISTEN""#, &ACCEPTOR));
        assert!(m("", &RUNNER), "the empty filter matches everything");
        assert!(m("   ", &RUNNER));
    }

    #[test]
    fn quoted_values_and_escapes() {
        let f = Filter::parse(r#"name="a \"b\" \\c""#).unwrap();
        assert_eq!(
            f.terms,
            vec![Term::Compare { field: Field::Name, op: Op::Eq, value: Value::Text(r#"a "b" \c"#.into()) }]
        );
    }

    fn err(filter: &str) -> FilterError {
        Filter::parse(filter).expect_err(filter)
    }

    #[test]
    fn errors_name_the_column_and_what_was_expected() {
        let e = err("sycall=read");
        assert_eq!(e.column, 1);
        assert!(e.message.starts_with("unknown field `sycall`"), "{e}");
        let e = err("syscall=read blocked>soon");
        assert_eq!(e.column, 22);
        assert!(e.message.contains("duration"), "{e}");
        assert_eq!(err("blocked>1").column, 9, "a duration needs a unit");
        let e = err(r#"wait="chan receive"#);
        assert_eq!((e.column, e.message.as_str()), (6, "unterminated quote"));
        let e = err("syscall=");
        assert_eq!(e.column, 9);
        assert!(e.message.starts_with("expected a value"), "{e}");
        assert!(err("name>3").message.contains("is text"));
        assert!(err("tid=abc").message.contains("integer"));
        assert!(err("tid~1").message.contains("number"));
        assert!(err("fd>tcp").message.contains("fd number"));
        assert!(err("=read").message.starts_with("expected a field name"));
        assert!(err(r#"name="a"b"#).message.contains("space between terms"));
        assert!(err(r#"name="\n""#).message.contains("escapes"));
        assert!(err(&"x".repeat(MAX_FILTER_LEN + 1)).message.contains("longer"));
        assert_eq!(err("syscall=read  bogus>1").column, 15, "columns count characters");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Some(1_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_duration("2m"), Some(120_000_000_000));
        assert_eq!(parse_duration("1h"), Some(3_600_000_000_000));
        assert_eq!(parse_duration("100us"), Some(100_000));
        assert_eq!(parse_duration("10ns"), Some(10));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_duration("1e400s"), None);
    }
}
