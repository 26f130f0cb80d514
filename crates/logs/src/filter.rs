//! CloudWatch Logs filter patterns (FilterLogEvents, metric filters).
//!
//! Three forms, as CloudWatch has them:
//! - **terms**: the empty pattern (everything), space-separated terms that
//!   must all occur (case-sensitive), double-quoted phrases, `?term`
//!   alternatives (any one of them) and `-term` exclusions;
//! - **JSON** `{ SELECTOR OP VALUE }` on messages that are JSON objects:
//!   selectors `$.a.b`, `$.a[0]`; `=`/`!=` against strings (quoted or bare,
//!   `*` wildcards) or numbers, `<`, `>`, `<=`, `>=` against numbers,
//!   `IS NULL`, `NOT EXISTS`, `IS TRUE`, `IS FALSE`; `&&`, `||`, parentheses;
//! - **space-delimited** `[a, b = value, ..., c > 10]`: the message split on
//!   spaces (a `"quoted"` or `[bracketed]` run is one field), one name per
//!   field, `...` for any number of fields; conditions on named fields with
//!   the same operators, joined with `&&` or `||`.
//!
//! TestMetricFilter's `extractedValues`: none for terms, `$.selector` for
//! the JSON selectors that resolved, `$name` for the space-delimited fields.

use std::collections::BTreeMap;

use ferry_proto::AwsError;
use serde_json::Value;

use crate::service::invalid;

/// A parsed pattern.
#[derive(Debug, PartialEq)]
pub(crate) enum Pattern {
    Terms(Terms),
    Json(JExpr),
    Space(Space),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Terms {
    all: Vec<String>,
    any: Vec<String>,
    none: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Num(f64),
    /// Text; `*` matches any run of characters.
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, PartialEq)]
pub(crate) enum JExpr {
    Or(Box<JExpr>, Box<JExpr>),
    And(Box<JExpr>, Box<JExpr>),
    Cmp(String, Op, Lit),
    IsNull(String),
    NotExists(String),
    IsBool(String, bool),
}

#[derive(Debug, PartialEq)]
pub(crate) struct Space {
    /// Field names in order; `None` is `...`.
    fields: Vec<Option<String>>,
    /// Conditions, all of which must hold; each is `||` of `&&` chains.
    conds: Vec<Vec<Vec<(String, Op, Lit)>>>,
}

fn bad(why: &str) -> AwsError {
    invalid(format!("Invalid filter pattern: {why}"))
}

impl Pattern {
    pub(crate) fn parse(src: &str) -> Result<Self, AwsError> {
        let src = src.trim();
        if let Some(body) = src.strip_prefix('{') {
            let body = body
                .strip_suffix('}')
                .ok_or_else(|| bad("a JSON pattern must end with '}'"))?;
            let toks = lex(body)?;
            let mut p = Cursor { toks, i: 0 };
            let e = p.jor()?;
            if p.i != p.toks.len() {
                return Err(bad("unexpected text in JSON pattern"));
            }
            return Ok(Pattern::Json(e));
        }
        if let Some(body) = src.strip_prefix('[') {
            let body = body
                .strip_suffix(']')
                .ok_or_else(|| bad("a space-delimited pattern must end with ']'"))?;
            return parse_space(body).map(Pattern::Space);
        }
        parse_terms(src).map(Pattern::Terms)
    }

    pub(crate) fn matches(&self, message: &str) -> bool {
        self.extract(message).is_some()
    }

    /// The values TestMetricFilter reports for a matching message; `None`
    /// when it does not match.
    pub(crate) fn extract(&self, message: &str) -> Option<BTreeMap<String, String>> {
        match self {
            Pattern::Terms(t) => t.matches(message).then(BTreeMap::new),
            Pattern::Json(e) => {
                let v: Value = serde_json::from_str(message).ok()?;
                if !v.is_object() || !jeval(e, &v) {
                    return None;
                }
                let mut out = BTreeMap::new();
                jselectors(e, &mut |sel| {
                    if let Some(x) = select(&v, sel) {
                        let shown = match x {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        out.insert(sel.to_owned(), shown);
                    }
                });
                Some(out)
            }
            Pattern::Space(s) => s.extract(message),
        }
    }
}

fn parse_terms(src: &str) -> Result<Terms, AwsError> {
    let mut p = Terms::default();
    let mut rest = src;
    while !rest.is_empty() {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let (kind, body) = match rest.as_bytes()[0] {
            b'?' => (1, &rest[1..]),
            b'-' => (2, &rest[1..]),
            _ => (0, rest),
        };
        let (term, after) = if let Some(q) = body.strip_prefix('"') {
            let end = q
                .find('"')
                .ok_or_else(|| bad("unterminated quoted phrase"))?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = body.find(char::is_whitespace).unwrap_or(body.len());
            (&body[..end], &body[end..])
        };
        if term.is_empty() {
            return Err(bad("empty term"));
        }
        match kind {
            1 => p.any.push(term.to_owned()),
            2 => p.none.push(term.to_owned()),
            _ => p.all.push(term.to_owned()),
        }
        rest = after;
    }
    Ok(p)
}

impl Terms {
    fn matches(&self, message: &str) -> bool {
        self.all.iter().all(|t| message.contains(t.as_str()))
            && (self.any.is_empty() || self.any.iter().any(|t| message.contains(t.as_str())))
            && !self.none.iter().any(|t| message.contains(t.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Sym(&'static str),
}

const SYMS: [&str; 11] = ["&&", "||", "!=", "<=", ">=", "=", "<", ">", "(", ")", ","];

fn lex(src: &str) -> Result<Vec<Tok>, AwsError> {
    let mut out = Vec::new();
    let mut rest = src.trim_start();
    while !rest.is_empty() {
        if let Some(q) = rest.strip_prefix('"') {
            let end = q
                .find('"')
                .ok_or_else(|| bad("unterminated quoted value"))?;
            out.push(Tok::Quoted(q[..end].to_owned()));
            rest = &q[end + 1..];
        } else if let Some(s) = SYMS.iter().find(|s| rest.starts_with(**s)) {
            out.push(Tok::Sym(s));
            rest = &rest[s.len()..];
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || "&|!=<>(),\"".contains(c))
                .unwrap_or(rest.len());
            if end == 0 {
                return Err(bad("unexpected character"));
            }
            out.push(Tok::Word(rest[..end].to_owned()));
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    Ok(out)
}

struct Cursor {
    toks: Vec<Tok>,
    i: usize,
}

impl Cursor {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn jor(&mut self) -> Result<JExpr, AwsError> {
        let mut e = self.jand()?;
        while self.sym("||") {
            e = JExpr::Or(Box::new(e), Box::new(self.jand()?));
        }
        Ok(e)
    }

    fn jand(&mut self) -> Result<JExpr, AwsError> {
        let mut e = self.jatom()?;
        while self.sym("&&") {
            e = JExpr::And(Box::new(e), Box::new(self.jatom()?));
        }
        Ok(e)
    }

    fn jatom(&mut self) -> Result<JExpr, AwsError> {
        if self.sym("(") {
            let e = self.jor()?;
            if !self.sym(")") {
                return Err(bad("missing ')'"));
            }
            return Ok(e);
        }
        let sel = match self.peek() {
            Some(Tok::Word(w)) if w.starts_with('$') && valid_selector(w) => w.clone(),
            _ => return Err(bad("expected a selector such as $.field")),
        };
        self.i += 1;
        if self.word("IS") {
            if self.word("NULL") {
                return Ok(JExpr::IsNull(sel));
            }
            if self.word("TRUE") {
                return Ok(JExpr::IsBool(sel, true));
            }
            if self.word("FALSE") {
                return Ok(JExpr::IsBool(sel, false));
            }
            return Err(bad("IS takes NULL, TRUE or FALSE"));
        }
        if self.word("NOT") {
            if self.word("EXISTS") {
                return Ok(JExpr::NotExists(sel));
            }
            return Err(bad("NOT takes EXISTS"));
        }
        let (op, lit) = self.op_lit()?;
        Ok(JExpr::Cmp(sel, op, lit))
    }

    fn op_lit(&mut self) -> Result<(Op, Lit), AwsError> {
        let op = match self.peek() {
            Some(Tok::Sym("=")) => Op::Eq,
            Some(Tok::Sym("!=")) => Op::Ne,
            Some(Tok::Sym("<")) => Op::Lt,
            Some(Tok::Sym(">")) => Op::Gt,
            Some(Tok::Sym("<=")) => Op::Le,
            Some(Tok::Sym(">=")) => Op::Ge,
            _ => return Err(bad("expected a comparison operator")),
        };
        self.i += 1;
        let lit = match self.peek() {
            Some(Tok::Quoted(s)) => Lit::Text(s.clone()),
            Some(Tok::Word(w)) => match w.parse::<f64>() {
                Ok(n) if n.is_finite() => Lit::Num(n),
                _ => Lit::Text(w.clone()),
            },
            _ => return Err(bad("expected a value")),
        };
        self.i += 1;
        if !matches!(op, Op::Eq | Op::Ne) && !matches!(lit, Lit::Num(_)) {
            return Err(bad("<, >, <= and >= compare numbers"));
        }
        Ok((op, lit))
    }
}

fn valid_selector(s: &str) -> bool {
    s.len() > 1
        && s.starts_with("$.")
        && s[1..]
            .chars()
            .all(|c| c.is_alphanumeric() || "._-[]@:".contains(c))
}

/// The value `sel` (`$.a.b[0]`) names in `v`.
fn select<'a>(v: &'a Value, sel: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in sel.strip_prefix("$.")?.split('.') {
        let (name, mut idx) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        while let Some(rest) = idx.strip_prefix('[') {
            let end = rest.find(']')?;
            cur = cur.get(rest[..end].parse::<usize>().ok()?)?;
            idx = &rest[end + 1..];
        }
        if !idx.is_empty() {
            return None;
        }
    }
    Some(cur)
}

fn jeval(e: &JExpr, v: &Value) -> bool {
    match e {
        JExpr::Or(a, b) => jeval(a, v) || jeval(b, v),
        JExpr::And(a, b) => jeval(a, v) && jeval(b, v),
        JExpr::IsNull(s) => select(v, s).is_some_and(Value::is_null),
        JExpr::NotExists(s) => select(v, s).is_none(),
        JExpr::IsBool(s, b) => select(v, s).and_then(Value::as_bool) == Some(*b),
        JExpr::Cmp(s, op, lit) => match select(v, s) {
            None => false,
            Some(Value::String(t)) => compare(t, *op, lit),
            Some(Value::Number(n)) => compare(&n.to_string(), *op, lit),
            Some(Value::Bool(b)) => compare(&b.to_string(), *op, lit),
            Some(_) => false,
        },
    }
}

fn jselectors(e: &JExpr, f: &mut impl FnMut(&str)) {
    match e {
        JExpr::Or(a, b) | JExpr::And(a, b) => {
            jselectors(a, f);
            jselectors(b, f);
        }
        JExpr::Cmp(s, ..) | JExpr::IsNull(s) | JExpr::NotExists(s) | JExpr::IsBool(s, _) => f(s),
    }
}

/// `text OP lit`: numbers compare as numbers, text with `*` wildcards.
fn compare(text: &str, op: Op, lit: &Lit) -> bool {
    match lit {
        Lit::Num(n) => {
            let Ok(x) = text.trim().parse::<f64>() else {
                return op == Op::Ne;
            };
            match op {
                Op::Eq => x == *n,
                Op::Ne => x != *n,
                Op::Lt => x < *n,
                Op::Gt => x > *n,
                Op::Le => x <= *n,
                Op::Ge => x >= *n,
            }
        }
        Lit::Text(p) => {
            let eq = glob(p, text);
            if op == Op::Ne { !eq } else { eq }
        }
    }
}

/// Whole-string match with `*` as any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == text;
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for m in middle {
        match rest.find(m) {
            Some(i) => rest = &rest[i + m.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

fn parse_space(body: &str) -> Result<Space, AwsError> {
    let toks = lex(body)?;
    let mut p = Cursor { toks, i: 0 };
    let mut fields = Vec::new();
    let mut conds = Vec::new();
    if p.peek().is_none() {
        return Err(bad("a space-delimited pattern needs at least one field"));
    }
    loop {
        let name = match p.peek() {
            Some(Tok::Word(w)) if w == "..." => None,
            Some(Tok::Word(w)) if w.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                Some(w.clone())
            }
            _ => return Err(bad("expected a field name or '...'")),
        };
        p.i += 1;
        if let Some(n) = &name {
            if fields.contains(&name) {
                return Err(bad(&format!("field '{n}' is named twice")));
            }
            if matches!(p.peek(), Some(Tok::Sym(s)) if *s != ",") {
                // `name OP value [&& name OP value]… [|| …]`
                let mut any = Vec::new();
                let mut all = Vec::new();
                let mut subject = n.clone();
                loop {
                    let (op, lit) = p.op_lit()?;
                    all.push((subject, op, lit));
                    if p.sym("&&") {
                    } else if p.sym("||") {
                        any.push(std::mem::take(&mut all));
                    } else {
                        break;
                    }
                    subject = match p.peek() {
                        Some(Tok::Word(w)) => w.clone(),
                        _ => return Err(bad("expected a field name")),
                    };
                    p.i += 1;
                }
                any.push(all);
                conds.push(any);
            }
        }
        fields.push(name);
        if p.peek().is_none() {
            break;
        }
        if !p.sym(",") {
            return Err(bad("expected ','"));
        }
    }
    let named: Vec<&String> = fields.iter().flatten().collect();
    for any in &conds {
        for (subject, ..) in any.iter().flatten() {
            if !named.contains(&subject) {
                return Err(bad(&format!("condition on unknown field '{subject}'")));
            }
        }
    }
    Ok(Space { fields, conds })
}

/// The message's space-delimited fields: `"quoted"` (quotes dropped) and
/// `[bracketed]` runs count as one.
fn split_fields(message: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = message.trim_start();
    while !rest.is_empty() {
        let (field, after) = if let Some(q) = rest.strip_prefix('"') {
            match q.find('"') {
                Some(e) => (&q[..e], &q[e + 1..]),
                None => (q, ""),
            }
        } else if rest.starts_with('[') {
            match rest.find(']') {
                Some(e) => (&rest[..=e], &rest[e + 1..]),
                None => (rest, ""),
            }
        } else {
            let e = rest.find(char::is_whitespace).unwrap_or(rest.len());
            (&rest[..e], &rest[e..])
        };
        out.push(field);
        rest = after.trim_start();
    }
    out
}

impl Space {
    fn extract(&self, message: &str) -> Option<BTreeMap<String, String>> {
        let words = split_fields(message);
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        match self.fields.iter().position(Option::is_none) {
            None => {
                if words.len() != self.fields.len() {
                    return None;
                }
                for (f, w) in self.fields.iter().zip(&words) {
                    if let Some(n) = f {
                        values.insert(n.clone(), (*w).to_owned());
                    }
                }
            }
            Some(at) => {
                let before = &self.fields[..at];
                let after = &self.fields[at + 1..];
                // Only one `...` is placed (more would be ambiguous).
                if after.iter().any(Option::is_none) || words.len() < before.len() + after.len() {
                    return None;
                }
                for (f, w) in before.iter().zip(&words) {
                    if let Some(n) = f {
                        values.insert(n.clone(), (*w).to_owned());
                    }
                }
                for (f, w) in after.iter().rev().zip(words.iter().rev()) {
                    if let Some(n) = f {
                        values.insert(n.clone(), (*w).to_owned());
                    }
                }
            }
        }
        let ok = self.conds.iter().all(|any| {
            any.iter().any(|all| {
                all.iter()
                    .all(|(f, op, lit)| values.get(f).is_some_and(|v| compare(v, *op, lit)))
            })
        });
        ok.then(|| {
            values
                .into_iter()
                .map(|(k, v)| (format!("${k}"), v))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn terms_phrases_alternatives_exclusions() {
        let p = Pattern::parse("").unwrap();
        assert!(p.matches("anything"));
        let p = Pattern::parse("GET \"HTTP/1.1\" 200").unwrap();
        assert!(p.matches("GET /index.html HTTP/1.1 200"));
        assert!(!p.matches("GET /index.html HTTP/1.0 200"));
        let p = Pattern::parse("?ERROR ?WARN -healthcheck").unwrap();
        assert!(p.matches("WARN disk"));
        assert!(!p.matches("INFO disk"));
        assert!(!p.matches("ERROR healthcheck"));
        assert!(Pattern::parse("\"open").is_err());
    }

    #[test]
    fn json_patterns() {
        let p = Pattern::parse(r#"{ ($.status >= 500 || $.level = "ERR*") && $.user.id != 7 }"#)
            .unwrap();
        assert!(p.matches(r#"{"status": 503, "user": {"id": 1}}"#));
        assert!(p.matches(r#"{"status": 200, "level": "ERROR", "user": {"id": 1}}"#));
        assert!(!p.matches(r#"{"status": 503, "user": {"id": 7}}"#));
        assert!(!p.matches("status 503"));
        let x = p.extract(r#"{"status": 503, "user": {"id": 1}}"#).unwrap();
        assert_eq!(x.get("$.status").map(String::as_str), Some("503"));
        assert_eq!(x.get("$.user.id").map(String::as_str), Some("1"));
        let p = Pattern::parse("{ $.items[1].ok IS TRUE && $.gone NOT EXISTS && $.n IS NULL }")
            .unwrap();
        assert!(p.matches(r#"{"items": [{}, {"ok": true}], "n": null}"#));
        assert!(!p.matches(r#"{"items": [{}, {"ok": true}], "n": null, "gone": 1}"#));
        let p = Pattern::parse("{ $.eventType = UpdateTrail }").unwrap();
        assert!(p.matches(r#"{"eventType": "UpdateTrail"}"#));
        for bad in [
            "{ $.a = 1",
            "{ a = 1 }",
            "{ $.a > x }",
            "{ $.a = }",
            "{ $.a IS MAYBE }",
            "{ }",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn space_delimited_patterns() {
        let line =
            r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.html HTTP/1.0" 404 2326"#;
        let p = Pattern::parse(
            "[ip, id, user, timestamp, request = \"*html*\", status = 4*, bytes > 1000]",
        )
        .unwrap();
        let x = p.extract(line).unwrap();
        assert_eq!(x.get("$user").map(String::as_str), Some("frank"));
        assert_eq!(
            x.get("$timestamp").map(String::as_str),
            Some("[10/Oct/2000:13:55:36 -0700]")
        );
        assert_eq!(
            x.get("$request").map(String::as_str),
            Some("GET /a.html HTTP/1.0")
        );
        assert!(
            !Pattern::parse("[ip, ..., status = 5*, bytes]")
                .unwrap()
                .matches(line)
        );
        assert!(
            Pattern::parse("[ip, ..., status = 200 || status = 404, bytes]")
                .unwrap()
                .matches(line)
        );
        assert!(!Pattern::parse("[a, b]").unwrap().matches(line));
        for bad in ["[", "[a, a]", "[a = ]", "[a, b = 1 && c = 2]", "[]"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }
}
