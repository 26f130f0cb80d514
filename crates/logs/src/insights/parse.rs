//! The Logs Insights query language subset: a tokenizer and a recursive
//! descent parser. Every input either parses or yields a [`QueryError`]
//! with the byte offset where it went wrong; nothing here panics.

use regex::Regex;

/// A query that did not parse: what and where (byte offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub pos: usize,
    pub message: String,
}

/// One `|`-separated command.
#[derive(Debug, Clone)]
pub enum Command {
    /// `fields a, b`: columns to show (adds to earlier `fields`).
    Fields(Vec<String>),
    /// `display a, b`: exactly these columns.
    Display(Vec<String>),
    Filter(Expr),
    Stats(Stats),
    /// `sort a desc, b`: `true` is descending.
    Sort(Vec<(String, bool)>),
    Limit(usize),
    Parse(ParseSpec),
}

#[derive(Debug, Clone)]
pub struct Stats {
    pub aggs: Vec<Agg>,
    pub by: Vec<GroupKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFn {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

#[derive(Debug, Clone)]
pub struct Agg {
    pub func: AggFn,
    /// `None` for `count(*)`.
    pub field: Option<String>,
    /// The result column: the alias, or the call as written (`count(*)`).
    pub name: String,
}

#[derive(Debug, Clone)]
pub enum GroupKey {
    Field {
        field: String,
        name: String,
    },
    /// `bin(5m)`: bucket width in milliseconds.
    Bin {
        width_ms: i64,
        name: String,
    },
}

impl GroupKey {
    pub fn name(&self) -> &str {
        match self {
            GroupKey::Field { name, .. } | GroupKey::Bin { name, .. } => name,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ParseSpec {
    pub field: String,
    pub how: ParseHow,
}

#[derive(Debug, Clone)]
pub enum ParseHow {
    /// `"text * text *"` and the names of the `*` captures.
    Glob {
        parts: Vec<String>,
        names: Vec<String>,
    },
    /// `/(?<name>...)/`: named groups become fields.
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub enum Operand {
    Field(String),
    Num(f64),
    Str(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, Clone)]
pub enum Matcher {
    Substring(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, CmpOp, Operand),
    Like(Operand, Matcher),
    In(Operand, Vec<Operand>),
    Present(String),
    /// A bare operand: true when it is present and not empty, 0 or false.
    Truthy(Operand),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(f64),
    Str(String),
    Regex(String),
    Sym(&'static str),
}

struct Lexer;

const SYMS: [&str; 15] = [
    "!=", "<=", ">=", "=~", "==", "|", ",", "(", ")", "[", "]", "=", "<", ">", "*",
];

impl Lexer {
    fn run(src: &str) -> Result<Vec<(Tok, usize)>, QueryError> {
        let b = src.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c.is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let start = i;
            if c == b'"' || c == b'\'' || c == b'/' || c == b'`' {
                let (text, next) = quoted(src, i, c)?;
                out.push((
                    match c {
                        b'/' => Tok::Regex(text),
                        b'`' => Tok::Ident(text),
                        _ => Tok::Str(text),
                    },
                    start,
                ));
                i = next;
            } else if c.is_ascii_digit()
                || (c == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
            {
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                let text = &src[start..i];
                // `5m` style durations stay identifiers for bin().
                match text.parse::<f64>() {
                    Ok(n) => out.push((Tok::Num(n), start)),
                    Err(_) => out.push((Tok::Ident(text.to_owned()), start)),
                }
            } else if c.is_ascii_alphabetic() || c == b'@' || c == b'_' || c == b'$' {
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b"_.@$-".contains(&b[i])) {
                    i += 1;
                }
                out.push((Tok::Ident(src[start..i].to_owned()), start));
            } else if let Some(sym) = SYMS.iter().find(|s| src[i..].starts_with(**s)) {
                out.push((Tok::Sym(sym), start));
                i += sym.len();
            } else {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(err(start, format!("unexpected symbol '{ch}'")));
            }
        }
        Ok(out)
    }
}

/// A quoted token starting at `i` with `q`; `\` escapes the quote (and, in
/// strings, itself). Returns the text and the index after the closing quote.
fn quoted(src: &str, i: usize, q: u8) -> Result<(String, usize), QueryError> {
    let b = src.as_bytes();
    let mut j = i + 1;
    let mut text = String::new();
    let mut seg = j;
    while j < b.len() {
        if b[j] == b'\\' && j + 1 < b.len() && (b[j + 1] == q || (q != b'/' && b[j + 1] == b'\\')) {
            text.push_str(&src[seg..j]);
            text.push(b[j + 1] as char);
            j += 2;
            seg = j;
        } else if b[j] == q {
            text.push_str(&src[seg..j]);
            return Ok((text, j + 1));
        } else {
            j += 1;
        }
    }
    Err(err(i, "unterminated quoted text"))
}

fn err(pos: usize, message: impl Into<String>) -> QueryError {
    QueryError {
        pos,
        message: message.into(),
    }
}

/// Parses a whole query.
pub fn parse(src: &str) -> Result<Vec<Command>, QueryError> {
    let toks = Lexer::run(src)?;
    let mut p = Parser {
        toks,
        i: 0,
        end: src.len(),
    };
    let mut cmds = Vec::new();
    loop {
        cmds.push(p.command()?);
        match p.peek() {
            None => break,
            Some(Tok::Sym("|")) => p.i += 1,
            Some(_) => return Err(p.unexpected()),
        }
    }
    if cmds
        .iter()
        .filter(|c| matches!(c, Command::Stats(_)))
        .count()
        > 1
    {
        return Err(err(0, "only one stats command is supported"));
    }
    Ok(cmds)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    i: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.0)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.end, |t| t.1)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.i).map(|t| t.0.clone());
        self.i += 1;
        t
    }

    fn unexpected(&self) -> QueryError {
        match self.peek() {
            None => err(self.end, "unexpected end of query"),
            Some(t) => err(self.pos(), format!("unexpected symbol found {}", show(t))),
        }
    }

    fn keyword(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), QueryError> {
        if self.sym(s) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn field(&mut self) -> Result<String, QueryError> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                self.i += 1;
                Ok(s)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn field_list(&mut self) -> Result<Vec<String>, QueryError> {
        let mut out = vec![self.field()?];
        while self.sym(",") {
            out.push(self.field()?);
        }
        Ok(out)
    }

    fn command(&mut self) -> Result<Command, QueryError> {
        let at = self.pos();
        let Some(Tok::Ident(name)) = self.next() else {
            self.i = self.i.saturating_sub(1);
            return Err(self.unexpected());
        };
        match name.to_ascii_lowercase().as_str() {
            "fields" => Ok(Command::Fields(self.field_list()?)),
            "display" => Ok(Command::Display(self.field_list()?)),
            "filter" => Ok(Command::Filter(self.or()?)),
            "stats" => self.stats(),
            "sort" => {
                let mut keys = Vec::new();
                loop {
                    let f = self.field()?;
                    let desc = if self.keyword("desc") {
                        true
                    } else {
                        self.keyword("asc");
                        false
                    };
                    keys.push((f, desc));
                    if !self.sym(",") {
                        break;
                    }
                }
                Ok(Command::Sort(keys))
            }
            "limit" => match self.next() {
                Some(Tok::Num(n)) if n >= 1.0 && n.fract() == 0.0 && n <= 10_000.0 => {
                    Ok(Command::Limit(n as usize))
                }
                _ => Err(err(
                    self.toks.get(self.i - 1).map_or(self.end, |t| t.1),
                    "limit takes a whole number between 1 and 10000",
                )),
            },
            "parse" => self.parse_cmd(),
            _ => Err(err(at, format!("unknown command '{name}'"))),
        }
    }

    fn stats(&mut self) -> Result<Command, QueryError> {
        let mut aggs = Vec::new();
        loop {
            let start = self.pos();
            let fname = self.field()?;
            let func = match fname.to_ascii_lowercase().as_str() {
                "count" => AggFn::Count,
                "sum" => AggFn::Sum,
                "avg" => AggFn::Avg,
                "min" => AggFn::Min,
                "max" => AggFn::Max,
                _ => return Err(err(start, format!("unsupported stats function '{fname}'"))),
            };
            self.expect_sym("(")?;
            let field =
                if func == AggFn::Count && (self.sym("*") || self.peek() == Some(&Tok::Sym(")"))) {
                    None
                } else {
                    Some(self.field()?)
                };
            self.expect_sym(")")?;
            let written = format!(
                "{}({})",
                fname.to_ascii_lowercase(),
                field.as_deref().unwrap_or("*")
            );
            let name = if self.keyword("as") {
                self.field()?
            } else {
                written
            };
            aggs.push(Agg { func, field, name });
            if !self.sym(",") {
                break;
            }
        }
        let mut by = Vec::new();
        if self.keyword("by") {
            loop {
                let at = self.pos();
                let f = self.field()?;
                let key = if f.eq_ignore_ascii_case("bin") && self.sym("(") {
                    let unit_at = self.pos();
                    let spec = match self.next() {
                        Some(Tok::Ident(s)) => s,
                        _ => return Err(err(unit_at, "bin() takes a period such as 5m")),
                    };
                    let width_ms = period_ms(&spec)
                        .ok_or_else(|| err(unit_at, format!("invalid bin period '{spec}'")))?;
                    self.expect_sym(")")?;
                    let name = if self.keyword("as") {
                        self.field()?
                    } else {
                        format!("bin({spec})")
                    };
                    GroupKey::Bin { width_ms, name }
                } else {
                    if self.peek() == Some(&Tok::Sym("(")) {
                        return Err(err(at, format!("unsupported function '{f}'")));
                    }
                    let name = if self.keyword("as") {
                        self.field()?
                    } else {
                        f.clone()
                    };
                    GroupKey::Field { field: f, name }
                };
                by.push(key);
                if !self.sym(",") {
                    break;
                }
            }
        }
        Ok(Command::Stats(Stats { aggs, by }))
    }

    fn parse_cmd(&mut self) -> Result<Command, QueryError> {
        // The field is optional: `parse "..." as a` reads @message.
        let field = match self.peek() {
            Some(Tok::Ident(_)) => self.field()?,
            _ => "@message".to_owned(),
        };
        let at = self.pos();
        match self.next() {
            Some(Tok::Str(glob)) => {
                if !self.keyword("as") {
                    return Err(self.unexpected());
                }
                let names = self.field_list()?;
                let parts: Vec<String> = glob.split('*').map(str::to_owned).collect();
                if parts.len() - 1 != names.len() {
                    return Err(err(
                        at,
                        format!(
                            "the pattern has {} wildcards but {} field names follow 'as'",
                            parts.len() - 1,
                            names.len()
                        ),
                    ));
                }
                Ok(Command::Parse(ParseSpec {
                    field,
                    how: ParseHow::Glob { parts, names },
                }))
            }
            Some(Tok::Regex(re)) => {
                let re = compile(&re, at)?;
                if re.capture_names().flatten().next().is_none() {
                    return Err(err(
                        at,
                        "the regular expression has no named capture groups",
                    ));
                }
                Ok(Command::Parse(ParseSpec {
                    field,
                    how: ParseHow::Regex(re),
                }))
            }
            _ => {
                self.i = self.i.saturating_sub(1);
                Err(self.unexpected())
            }
        }
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut e = self.and()?;
        while self.keyword("or") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut e = self.not()?;
        while self.keyword("and") {
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, QueryError> {
        if self.keyword("not") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, QueryError> {
        if self.sym("(") {
            let e = self.or()?;
            self.expect_sym(")")?;
            return Ok(e);
        }
        if matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("ispresent"))
            && matches!(self.toks.get(self.i + 1), Some((Tok::Sym("("), _)))
        {
            self.i += 2;
            let f = self.field()?;
            self.expect_sym(")")?;
            return Ok(Expr::Present(f));
        }
        let left = self.operand()?;
        let op = match self.peek() {
            Some(Tok::Sym("=" | "==")) => Some(CmpOp::Eq),
            Some(Tok::Sym("!=")) => Some(CmpOp::Ne),
            Some(Tok::Sym("<")) => Some(CmpOp::Lt),
            Some(Tok::Sym(">")) => Some(CmpOp::Gt),
            Some(Tok::Sym("<=")) => Some(CmpOp::Le),
            Some(Tok::Sym(">=")) => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.i += 1;
            return Ok(Expr::Cmp(left, op, self.operand()?));
        }
        if self.sym("=~") {
            return Ok(Expr::Like(left, self.matcher()?));
        }
        let negated = self.keyword("not");
        let e = if self.keyword("like") {
            Expr::Like(left, self.matcher()?)
        } else if self.keyword("in") {
            self.expect_sym("[")?;
            let mut items = Vec::new();
            if !self.sym("]") {
                loop {
                    items.push(self.operand()?);
                    if self.sym("]") {
                        break;
                    }
                    self.expect_sym(",")?;
                }
            }
            Expr::In(left, items)
        } else if negated {
            return Err(self.unexpected());
        } else {
            Expr::Truthy(left)
        };
        Ok(if negated { Expr::Not(Box::new(e)) } else { e })
    }

    fn matcher(&mut self) -> Result<Matcher, QueryError> {
        let at = self.pos();
        match self.next() {
            Some(Tok::Str(s)) => Ok(Matcher::Substring(s)),
            Some(Tok::Regex(r)) => Ok(Matcher::Regex(compile(&r, at)?)),
            _ => {
                self.i = self.i.saturating_sub(1);
                Err(self.unexpected())
            }
        }
    }

    fn operand(&mut self) -> Result<Operand, QueryError> {
        match self.next() {
            Some(Tok::Ident(s)) => Ok(Operand::Field(s)),
            Some(Tok::Num(n)) => Ok(Operand::Num(n)),
            Some(Tok::Str(s)) => Ok(Operand::Str(s)),
            _ => {
                self.i = self.i.saturating_sub(1);
                Err(self.unexpected())
            }
        }
    }
}

fn compile(re: &str, at: usize) -> Result<Regex, QueryError> {
    // Insights regexes take an `(?i)` flag like Rust's; the size limit keeps
    // a hostile pattern from eating memory.
    regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .build()
        .map_err(|_| err(at, "invalid regular expression"))
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => s.clone(),
        Tok::Num(n) => n.to_string(),
        Tok::Str(s) => format!("\"{s}\""),
        Tok::Regex(s) => format!("/{s}/"),
        Tok::Sym(s) => (*s).to_owned(),
    }
}

/// `5m`, `30s`, `1h`, `100ms`, `1d`, `1w` in milliseconds.
fn period_ms(spec: &str) -> Option<i64> {
    let split = spec.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = spec.split_at(split);
    let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" | "sec" => 1_000,
        "m" | "min" => 60_000,
        "h" | "hr" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

/// `(line, column)`, both from 1, of byte offset `pos` in `src`.
pub fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let before = src.get(..pos.min(src.len())).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
