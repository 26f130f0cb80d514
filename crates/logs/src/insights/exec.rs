//! Running a parsed query over events: per-event commands stream, the
//! first `stats`, `sort` or `limit` collects, and the commands after it
//! run over the collected rows.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::OnceLock;

use super::parse::{
    Agg, AggFn, CmpOp, Command, Expr, GroupKey, Matcher, Operand, ParseHow, ParseSpec, Stats,
};

/// A stored field value (made by `parse`, `stats`, or found in JSON).
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Num(f64),
    Str(String),
}

/// A field value as read: borrowed from the row or the query where it can
/// be, so evaluating a filter over a million events copies no messages.
#[derive(Debug, Clone, PartialEq)]
pub enum V<'a> {
    Num(f64),
    Str(Cow<'a, str>),
}

impl V<'_> {
    fn num(&self) -> Option<f64> {
        match self {
            V::Num(n) => Some(*n),
            V::Str(s) => s.trim().parse().ok(),
        }
    }

    fn text(&self) -> Cow<'_, str> {
        match self {
            V::Num(n) => Cow::Owned(fmt_num(*n)),
            V::Str(s) => Cow::Borrowed(s),
        }
    }
}

impl Val {
    fn as_v(&self) -> V<'_> {
        match self {
            Val::Num(n) => V::Num(*n),
            Val::Str(s) => V::Str(Cow::Borrowed(s)),
        }
    }
}

/// Whole numbers without a fraction, others as Rust's shortest form.
pub fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// One log event as a query sees it.
#[derive(Debug, Clone)]
pub struct Event {
    pub timestamp: i64,
    pub ingestion_time: i64,
    pub message: String,
    pub stream: std::sync::Arc<str>,
    /// `ACCOUNT:GROUP`.
    pub log: std::sync::Arc<str>,
    pub group: std::sync::Arc<str>,
    /// Position in the stream; `@ptr` is made from it when shown.
    pub pos: u64,
}

impl Event {
    fn ptr(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}:{}:{}", self.group, self.stream, self.pos))
    }
}

/// A row: an event (before `stats`) and the fields commands added.
#[derive(Debug, Clone, Default)]
pub struct Row {
    event: Option<Event>,
    extra: Vec<(String, Val)>,
    /// Fields discovered in a JSON message, parsed on first use.
    json: OnceLock<Option<BTreeMap<String, Val>>>,
}

impl Row {
    pub fn from_event(e: Event) -> Self {
        Row {
            event: Some(e),
            ..Default::default()
        }
    }

    pub fn get(&self, name: &str) -> Option<V<'_>> {
        if let Some((_, v)) = self.extra.iter().rev().find(|(n, _)| n == name) {
            return Some(v.as_v());
        }
        let e = self.event.as_ref()?;
        match name {
            "@timestamp" => Some(V::Num(e.timestamp as f64)),
            "@ingestionTime" => Some(V::Num(e.ingestion_time as f64)),
            "@message" => Some(V::Str(Cow::Borrowed(&e.message))),
            "@logStream" => Some(V::Str(Cow::Borrowed(&e.stream))),
            "@log" => Some(V::Str(Cow::Borrowed(&e.log))),
            "@ptr" => Some(V::Str(Cow::Owned(e.ptr()))),
            _ => self
                .json
                .get_or_init(|| discover(&e.message))
                .as_ref()
                .and_then(|m| m.get(name))
                .map(Val::as_v),
        }
    }

    fn set(&mut self, name: &str, v: Val) {
        self.extra.push((name.to_owned(), v));
    }

    /// The value as the results show it (`@timestamp` as a UTC time).
    pub fn shown(&self, name: &str) -> Option<String> {
        let v = self.get(name)?;
        if (name == "@timestamp" || name == "@ingestionTime") && self.event.is_some() {
            return v.num().map(|n| fmt_time(n as i64));
        }
        Some(v.text().into_owned())
    }
}

/// CloudWatch discovers the fields of JSON messages, nested ones joined
/// with dots (`{"req":{"status":200}}` gives `req.status`).
fn discover(message: &str) -> Option<BTreeMap<String, Val>> {
    if !message.trim_start().starts_with('{') {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(message).ok()?;
    let mut out = BTreeMap::new();
    flatten("", &v, &mut out, 0);
    Some(out)
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, Val>, depth: usize) {
    use serde_json::Value as J;
    match v {
        J::Object(m) if depth < 16 => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out, depth + 1);
            }
        }
        J::Number(n) => {
            if let Some(f) = n.as_f64() {
                out.insert(prefix.to_owned(), Val::Num(f));
            }
        }
        J::String(s) => {
            out.insert(prefix.to_owned(), Val::Str(s.clone()));
        }
        J::Bool(b) => {
            out.insert(prefix.to_owned(), Val::Str(b.to_string()));
        }
        J::Null => {}
        other => {
            out.insert(prefix.to_owned(), Val::Str(other.to_string()));
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS.mmm` in UTC, as Insights shows `@timestamp`.
pub fn fmt_time(ms: i64) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| ms.to_string())
}

fn eval(e: &Expr, row: &Row) -> bool {
    match e {
        Expr::Or(a, b) => eval(a, row) || eval(b, row),
        Expr::And(a, b) => eval(a, row) && eval(b, row),
        Expr::Not(a) => !eval(a, row),
        Expr::Present(f) => row.get(f).is_some(),
        Expr::Truthy(o) => match operand(o, row) {
            None => false,
            Some(V::Num(n)) => n != 0.0,
            Some(V::Str(s)) => !s.is_empty() && s != "false" && s != "0",
        },
        Expr::Cmp(a, op, b) => {
            let (Some(x), Some(y)) = (operand(a, row), operand(b, row)) else {
                return *op == CmpOp::Ne;
            };
            let ord = compare(&x, &y);
            match op {
                CmpOp::Eq => ord == Some(Ordering::Equal),
                CmpOp::Ne => ord != Some(Ordering::Equal),
                CmpOp::Lt => ord == Some(Ordering::Less),
                CmpOp::Gt => ord == Some(Ordering::Greater),
                CmpOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                CmpOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
            }
        }
        Expr::Like(a, m) => operand(a, row).is_some_and(|v| {
            let s = v.text();
            match m {
                Matcher::Substring(t) => s.contains(t.as_str()),
                Matcher::Regex(r) => r.is_match(&s),
            }
        }),
        Expr::In(a, items) => operand(a, row).is_some_and(|v| {
            items
                .iter()
                .any(|i| operand(i, row).is_some_and(|w| compare(&v, &w) == Some(Ordering::Equal)))
        }),
    }
}

fn operand<'a>(o: &'a Operand, row: &'a Row) -> Option<V<'a>> {
    match o {
        Operand::Field(f) => row.get(f),
        Operand::Num(n) => Some(V::Num(*n)),
        Operand::Str(s) => Some(V::Str(Cow::Borrowed(s))),
    }
}

/// Numbers compare as numbers when both sides read as one; otherwise as
/// text. A number against text that is not a number does not compare.
fn compare(a: &V<'_>, b: &V<'_>) -> Option<Ordering> {
    match (a, b) {
        (V::Str(x), V::Str(y)) => match (a.num(), b.num()) {
            (Some(p), Some(q)) => p.partial_cmp(&q),
            _ => Some(x.cmp(y)),
        },
        _ => a.num()?.partial_cmp(&b.num()?),
    }
}

fn apply_parse(spec: &ParseSpec, row: &mut Row) {
    // Captures are collected while the source is borrowed, then set.
    let found: Vec<(String, String)> = {
        let Some(v) = row.get(&spec.field) else {
            return;
        };
        let src = v.text();
        match &spec.how {
            ParseHow::Glob { parts, names } => match glob_match(&src, parts) {
                Some(values) => names.iter().cloned().zip(values).collect(),
                None => return,
            },
            ParseHow::Regex(re) => match re.captures(&src) {
                Some(c) => re
                    .capture_names()
                    .flatten()
                    .filter_map(|n| c.name(n).map(|m| (n.to_owned(), m.as_str().to_owned())))
                    .collect(),
                None => return,
            },
        }
    };
    for (n, v) in found {
        row.set(&n, Val::Str(v));
    }
}

/// Matches `parts` (the literal text between `*`s) in order, anywhere in
/// `s`; each `*` takes the shortest text up to the next literal, the last
/// the rest of the line.
fn glob_match(s: &str, parts: &[String]) -> Option<Vec<String>> {
    let (first, rest) = parts.split_first()?;
    let mut at = s.find(first.as_str())? + first.len();
    let mut out = Vec::with_capacity(rest.len());
    for (i, lit) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        if last && lit.is_empty() {
            out.push(s[at..].to_owned());
            at = s.len();
        } else {
            let off = s[at..].find(lit.as_str())?;
            out.push(s[at..at + off].to_owned());
            at += off + lit.len();
        }
    }
    Some(out)
}

/// Aggregation state of one group.
#[derive(Debug, Clone, Default)]
struct Acc {
    count: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum KeyPart {
    Missing,
    Bin(i64),
    Num(i64, String),
    Str(String),
}

/// `stats`: groups rows and folds the aggregates.
struct Aggregator<'a> {
    stats: &'a Stats,
    groups: BTreeMap<Vec<KeyPart>, Vec<Acc>>,
}

impl<'a> Aggregator<'a> {
    fn new(stats: &'a Stats) -> Self {
        Self {
            stats,
            groups: BTreeMap::new(),
        }
    }

    fn add(&mut self, row: &Row) {
        let key: Vec<KeyPart> = self
            .stats
            .by
            .iter()
            .map(|k| match k {
                GroupKey::Bin { width_ms, .. } => match row.get("@timestamp").and_then(|v| v.num())
                {
                    Some(t) => KeyPart::Bin((t as i64).div_euclid(*width_ms) * width_ms),
                    None => KeyPart::Missing,
                },
                GroupKey::Field { field, .. } => match row.get(field) {
                    None => KeyPart::Missing,
                    Some(v) => match v.num() {
                        // Numbers group (and order) by value.
                        Some(n) if n.fract() == 0.0 && n.abs() < 9e15 => {
                            KeyPart::Num(n as i64, v.text().into_owned())
                        }
                        _ => KeyPart::Str(v.text().into_owned()),
                    },
                },
            })
            .collect();
        let accs = self
            .groups
            .entry(key)
            .or_insert_with(|| vec![Acc::default(); self.stats.aggs.len()]);
        for (agg, acc) in self.stats.aggs.iter().zip(accs.iter_mut()) {
            match &agg.field {
                None => acc.count += 1,
                Some(f) => {
                    let Some(v) = row.get(f) else { continue };
                    if agg.func == AggFn::Count {
                        acc.count += 1;
                    } else if let Some(n) = v.num() {
                        acc.count += 1;
                        acc.sum += n;
                        acc.min = Some(acc.min.map_or(n, |m| m.min(n)));
                        acc.max = Some(acc.max.map_or(n, |m| m.max(n)));
                    }
                }
            }
        }
    }

    fn finish(self) -> Vec<Row> {
        let stats = self.stats;
        // An ungrouped stats over nothing still answers (count 0).
        let mut groups = self.groups;
        if groups.is_empty() && stats.by.is_empty() {
            groups.insert(Vec::new(), vec![Acc::default(); stats.aggs.len()]);
        }
        groups
            .into_iter()
            .map(|(key, accs)| {
                let mut row = Row::default();
                for (k, part) in stats.by.iter().zip(key) {
                    match part {
                        KeyPart::Missing => {}
                        KeyPart::Bin(t) => row.set(k.name(), Val::Str(fmt_time(t))),
                        KeyPart::Num(_, s) | KeyPart::Str(s) => row.set(k.name(), Val::Str(s)),
                    }
                }
                for (agg, acc) in stats.aggs.iter().zip(accs) {
                    if let Some(v) = result(agg, &acc) {
                        row.set(&agg.name, Val::Num(v));
                    }
                }
                row
            })
            .collect()
    }
}

fn result(agg: &Agg, acc: &Acc) -> Option<f64> {
    match agg.func {
        AggFn::Count => Some(acc.count as f64),
        AggFn::Sum => (acc.count > 0).then_some(acc.sum),
        AggFn::Avg => (acc.count > 0).then(|| acc.sum / acc.count as f64),
        AggFn::Min => acc.min,
        AggFn::Max => acc.max,
    }
}

fn sort_rows(rows: &mut [Row], keys: &[(String, bool)]) {
    rows.sort_by(|a, b| {
        for (f, desc) in keys {
            let ord = match (a.get(f), b.get(f)) {
                (None, None) => Ordering::Equal,
                // Rows without the field go last either way.
                (None, Some(_)) => return Ordering::Greater,
                (Some(_), None) => return Ordering::Less,
                (Some(x), Some(y)) => compare(&x, &y).unwrap_or(Ordering::Equal),
            };
            let ord = if *desc { ord.reverse() } else { ord };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    });
}

/// Counters for GetQueryResults' statistics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub scanned: u64,
    pub matched: u64,
    pub bytes: u64,
}

/// A query's execution: feed events with [`Run::push`], then [`Run::finish`].
pub struct Run<'a> {
    cmds: &'a [Command],
    /// Index of the first collecting command (`stats`, `sort`, `limit`).
    split: usize,
    agg: Option<Aggregator<'a>>,
    rows: Vec<Row>,
    /// `sort` then `limit k` right after the split: keep only the best k.
    top_k: Option<(&'a [(String, bool)], usize)>,
    /// `limit k` (or the request's limit) with nothing to reorder: stop at k.
    stop_at: Option<usize>,
    pub counters: Counters,
}

impl<'a> Run<'a> {
    pub fn new(cmds: &'a [Command], max_rows: usize) -> Self {
        let split = cmds
            .iter()
            .position(|c| matches!(c, Command::Stats(_) | Command::Sort(_) | Command::Limit(_)))
            .unwrap_or(cmds.len());
        let mut agg = None;
        let mut top_k = None;
        let mut stop_at = None;
        match cmds.get(split) {
            Some(Command::Stats(s)) => agg = Some(Aggregator::new(s)),
            Some(Command::Sort(keys)) => {
                if let Some(Command::Limit(k)) = cmds.get(split + 1) {
                    top_k = Some((keys.as_slice(), *k));
                }
            }
            Some(Command::Limit(k)) => stop_at = Some((*k).min(max_rows)),
            _ => stop_at = Some(max_rows),
        }
        Self {
            cmds,
            split,
            agg,
            rows: Vec::new(),
            top_k,
            stop_at,
            counters: Counters::default(),
        }
    }

    /// Feeds one event; `Break` when no more are needed.
    pub fn push(&mut self, e: Event) -> ControlFlow<()> {
        self.counters.scanned += 1;
        self.counters.bytes += e.message.len() as u64;
        let mut row = Row::from_event(e);
        for c in &self.cmds[..self.split] {
            match c {
                Command::Filter(x) if !eval(x, &row) => return ControlFlow::Continue(()),
                Command::Parse(p) => apply_parse(p, &mut row),
                _ => {}
            }
        }
        self.counters.matched += 1;
        if let Some(agg) = &mut self.agg {
            agg.add(&row);
            return ControlFlow::Continue(());
        }
        self.rows.push(row);
        if let Some((keys, k)) = self.top_k
            && self.rows.len() >= 2 * k.max(512)
        {
            sort_rows(&mut self.rows, keys);
            self.rows.truncate(k);
        }
        if self.stop_at.is_some_and(|k| self.rows.len() >= k) {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// Runs the commands after the split; returns the rows and the columns
    /// to show.
    pub fn finish(self, max_rows: usize) -> (Vec<Row>, Vec<String>) {
        let mut rows = match self.agg {
            Some(agg) => agg.finish(),
            None => self.rows,
        };
        let rest_from = if matches!(self.cmds.get(self.split), Some(Command::Stats(_))) {
            self.split + 1
        } else {
            self.split
        };
        for c in &self.cmds[rest_from.min(self.cmds.len())..] {
            match c {
                Command::Filter(x) => rows.retain(|r| eval(x, r)),
                Command::Parse(p) => rows.iter_mut().for_each(|r| apply_parse(p, r)),
                Command::Sort(keys) => sort_rows(&mut rows, keys),
                Command::Limit(k) => rows.truncate(*k),
                Command::Stats(s) => {
                    let mut agg = Aggregator::new(s);
                    rows.iter().for_each(|r| agg.add(r));
                    rows = agg.finish();
                }
                Command::Fields(_) | Command::Display(_) => {}
            }
        }
        rows.truncate(max_rows);
        (rows, columns(self.cmds))
    }
}

/// The columns a query shows: `fields` accumulate, `display` replaces,
/// `stats` resets to its keys and aggregates; events carry `@ptr`.
fn columns(cmds: &[Command]) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    let mut stats = false;
    for c in cmds {
        match c {
            Command::Fields(f) => {
                for n in f {
                    if !cols.contains(n) {
                        cols.push(n.clone());
                    }
                }
            }
            Command::Display(f) => cols = f.clone(),
            Command::Stats(s) => {
                stats = true;
                cols = s.by.iter().map(|k| k.name().to_owned()).collect();
                cols.extend(s.aggs.iter().map(|a| a.name.clone()));
            }
            _ => {}
        }
    }
    if cols.is_empty() {
        cols = vec!["@timestamp".into(), "@message".into()];
    }
    if !stats && !cols.iter().any(|c| c == "@ptr") {
        cols.push("@ptr".into());
    }
    cols
}
