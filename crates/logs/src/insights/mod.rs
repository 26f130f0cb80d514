//! CloudWatch Logs Insights: the query language subset ([`parse`]), its
//! executor ([`exec`]) and the registry of queries running in the
//! background.
//!
//! A query runs on its own thread, streaming over the sealed batches of its
//! groups within the time range, each batch decrypted once; its results
//! live in memory only (they are log data: never written to disk) and are
//! lost at restart, like the registry itself.

pub mod exec;
pub mod parse;

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ferry_proto::AwsError;
use ferry_store::Store;

use crate::model::{STREAMS, Stream};
use crate::ops::read;
use crate::seal::Sealer;
use crate::service::store_error;
use exec::{Counters, Event, Run};
use parse::Command;

/// Queries CloudWatch lets run at once per account.
pub(crate) const MAX_CONCURRENT: usize = 30;
/// Finished queries remembered for GetQueryResults and DescribeQueries.
const KEEP_FINISHED: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Scheduled,
    Running,
    Complete,
    Failed,
    Cancelled,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Scheduled => "Scheduled",
            Status::Running => "Running",
            Status::Complete => "Complete",
            Status::Failed => "Failed",
            Status::Cancelled => "Cancelled",
        }
    }

    fn active(self) -> bool {
        matches!(self, Status::Scheduled | Status::Running)
    }
}

/// What a query has produced so far.
#[derive(Debug)]
pub(crate) struct State {
    pub status: Status,
    pub rows: Vec<Vec<(String, String)>>,
    pub counters: Counters,
}

/// One query.
#[derive(Debug)]
pub(crate) struct Query {
    pub id: String,
    pub query_string: String,
    pub groups: Vec<String>,
    pub create_time: i64,
    cancel: AtomicBool,
    state: Mutex<State>,
}

impl Query {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a runner panicked mid-update; the
        // state it guards is still a valid snapshot.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cancels a scheduled or running query; `false` when it had finished.
    pub(crate) fn stop(&self) -> bool {
        let mut st = self.state();
        if !st.status.active() {
            return false;
        }
        self.cancel.store(true, Ordering::Relaxed);
        st.status = Status::Cancelled;
        true
    }
}

/// The queries of this server, newest last.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    queries: Mutex<VecDeque<Arc<Query>>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<Query>>> {
        self.queries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new query as Scheduled, unless too many are active.
    pub(crate) fn add(
        &self,
        query_string: String,
        groups: Vec<String>,
        create_time: i64,
    ) -> Result<Arc<Query>, AwsError> {
        let mut qs = self.lock();
        if qs.iter().filter(|q| q.state().status.active()).count() >= MAX_CONCURRENT {
            return Err(AwsError::client(
                "LimitExceededException",
                format!("Account maximum query concurrency limit of [{MAX_CONCURRENT}] reached."),
            ));
        }
        while qs.len() >= KEEP_FINISHED {
            match qs.iter().position(|q| !q.state().status.active()) {
                Some(i) => {
                    qs.remove(i);
                }
                None => break,
            }
        }
        let q = Arc::new(Query {
            id: uuid::Uuid::new_v4().to_string(),
            query_string,
            groups,
            create_time,
            cancel: AtomicBool::new(false),
            state: Mutex::new(State {
                status: Status::Scheduled,
                rows: Vec::new(),
                counters: Counters::default(),
            }),
        });
        qs.push_back(q.clone());
        Ok(q)
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Query>> {
        self.lock().iter().find(|q| q.id == id).cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Query>> {
        self.lock().iter().cloned().collect()
    }
}

/// What a runner needs, owned, so it can outlive the request.
pub(crate) struct Job {
    pub store: Arc<Store>,
    pub sealer: Arc<dyn Sealer>,
    pub account: String,
    pub cmds: Vec<Command>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub max_rows: usize,
}

/// Runs `q` to the end (on the caller's thread) and records the outcome.
pub(crate) fn run(job: &Job, q: &Query) {
    {
        let mut st = q.state();
        if st.status != Status::Scheduled {
            return; // stopped before it started
        }
        st.status = Status::Running;
    }
    let outcome = execute(job, q);
    let mut st = q.state();
    if st.status == Status::Cancelled {
        return;
    }
    match outcome {
        Ok((rows, counters)) => {
            st.rows = rows;
            st.counters = counters;
            st.status = Status::Complete;
        }
        Err(_) => st.status = Status::Failed,
    }
}

type Rows = Vec<Vec<(String, String)>>;

fn execute(job: &Job, q: &Query) -> Result<(Rows, Counters), AwsError> {
    let mut run = Run::new(&job.cmds, job.max_rows);
    'groups: for group in &q.groups {
        let cutoff = match read::retention_cutoff_in(&job.store, group) {
            Ok(c) => c,
            // A group deleted since StartQuery has nothing left to read.
            Err(_) => continue,
        };
        let log: Arc<str> = format!("{}:{group}", job.account).into();
        let group_arc: Arc<str> = group.as_str().into();
        let streams = job
            .store
            .scan::<Stream>(STREAMS, &format!("{group}:"))
            .map_err(store_error)?;
        for (_, s) in streams {
            if s.last_event.is_some_and(|t| t < job.start_ms)
                || s.first_event.is_some_and(|t| t > job.end_ms)
            {
                continue;
            }
            let stream: Arc<str> = s.name.as_str().into();
            let flow = read::visit_stream(
                &job.store,
                job.sealer.as_ref(),
                group,
                &s,
                read::Window::new(cutoff, Some(job.start_ms), Some(job.end_ms)),
                |pos, e| {
                    if q.cancel.load(Ordering::Relaxed) {
                        return ControlFlow::Break(());
                    }
                    run.push(Event {
                        timestamp: e.timestamp,
                        ingestion_time: e.ingestion_time,
                        message: e.message,
                        stream: stream.clone(),
                        log: log.clone(),
                        group: group_arc.clone(),
                        pos,
                    })
                },
            )?;
            if flow.is_break() {
                break 'groups;
            }
        }
    }
    let counters = run.counters;
    let (rows, cols) = run.finish(job.max_rows);
    let out = rows
        .iter()
        .map(|r| {
            cols.iter()
                .filter_map(|c| r.shown(c).map(|v| (c.clone(), v)))
                .collect()
        })
        .collect();
    Ok((out, counters))
}

#[cfg(test)]
mod tests {
    use super::exec::{Event, Run, fmt_time};
    use super::parse::parse;
    use super::*;

    fn ev(ts: i64, msg: &str, stream: &str) -> Event {
        Event {
            timestamp: ts,
            ingestion_time: ts,
            message: msg.into(),
            stream: stream.into(),
            log: "1:g".into(),
            group: "g".into(),
            pos: ts as u64,
        }
    }

    fn run(q: &str, events: &[Event]) -> Vec<Vec<(String, String)>> {
        let cmds = parse(q).unwrap();
        let mut r = Run::new(&cmds, 1000);
        for e in events {
            if r.push(e.clone()).is_break() {
                break;
            }
        }
        let (rows, cols) = r.finish(1000);
        rows.iter()
            .map(|row| {
                cols.iter()
                    .filter_map(|c| row.shown(c).map(|v| (c.clone(), v)))
                    .collect()
            })
            .collect()
    }

    fn col(rows: &[Vec<(String, String)>], name: &str) -> Vec<String> {
        rows.iter()
            .map(|r| {
                r.iter()
                    .find(|(f, _)| f == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    fn sample() -> Vec<Event> {
        (0..10)
            .map(|i| {
                let level = if i % 3 == 0 { "ERROR" } else { "INFO" };
                ev(
                    i * 60_000,
                    &format!("{level} user=u{} latency={} path=/p{}", i % 2, i * 10, i),
                    if i < 5 { "a" } else { "b" },
                )
            })
            .collect()
    }

    #[test]
    fn filter_parse_sort_limit() {
        let rows = run(
            r#"fields @timestamp, lat | parse @message "user=* latency=* " as user, lat | filter lat >= 30 and user = "u1" | sort lat desc | limit 2"#,
            &sample(),
        );
        assert_eq!(col(&rows, "lat"), ["90", "70"]);
        assert_eq!(col(&rows, "user"), ["", ""]); // not a shown column
        assert_eq!(col(&rows, "@timestamp")[0], fmt_time(9 * 60_000));
        let ptr = rows[0]
            .iter()
            .find(|(f, _)| f == "@ptr")
            .map(|(_, v)| v.clone())
            .unwrap();
        use base64::Engine;
        let ptr = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(ptr)
            .unwrap();
        assert_eq!(ptr, b"g:b:540000");
        let rows = run(
            r#"filter @message like /ERROR.*u1/ | fields @message"#,
            &sample(),
        );
        assert_eq!(rows.len(), 2); // i = 3, 9
        let rows = run(
            r#"filter @logStream in ["b"] and not @message like "INFO" | fields @timestamp"#,
            &sample(),
        );
        assert_eq!(rows.len(), 2); // i = 6, 9
        let rows = run(
            "filter @message != 'x' or @timestamp < 0 | limit 3",
            &sample(),
        );
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn stats_by_field_and_bin() {
        let rows = run(
            r#"parse @message "latency=* " as lat | stats count(*) as n, sum(lat), avg(lat), min(lat), max(lat) by @logStream"#,
            &sample(),
        );
        assert_eq!(col(&rows, "@logStream"), ["a", "b"]);
        assert_eq!(col(&rows, "n"), ["5", "5"]);
        assert_eq!(col(&rows, "sum(lat)"), ["100", "350"]);
        assert_eq!(col(&rows, "avg(lat)"), ["20", "70"]);
        assert_eq!(col(&rows, "min(lat)"), ["0", "50"]);
        assert_eq!(col(&rows, "max(lat)"), ["40", "90"]);
        let rows = run("stats count(*) by bin(5m)", &sample());
        assert_eq!(col(&rows, "bin(5m)"), [fmt_time(0), fmt_time(300_000)]);
        assert_eq!(col(&rows, "count(*)"), ["5", "5"]);
        let rows = run("filter @message like 'nothing' | stats count(*)", &sample());
        assert_eq!(col(&rows, "count(*)"), ["0"]);
        let rows = run(
            "stats count(*) as c by @logStream | sort c desc | limit 1",
            &sample(),
        );
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn json_fields_and_regex_parse() {
        let evs = vec![
            ev(1, r#"{"status": 500, "req": {"path": "/a"}}"#, "s"),
            ev(2, r#"{"status": 200, "req": {"path": "/b"}}"#, "s"),
            ev(3, "plain id=42", "s"),
        ];
        let rows = run("filter status >= 400 | fields req.path", &evs);
        assert_eq!(col(&rows, "req.path"), ["/a"]);
        let rows = run(
            r#"parse @message /id=(?<id>\d+)/ | filter ispresent(id) | fields id"#,
            &evs,
        );
        assert_eq!(col(&rows, "id"), ["42"]);
    }

    #[test]
    fn malformed_queries_have_positions_and_never_panic() {
        for (q, pos) in [
            ("fields", 6),
            ("filter a = ", 11),
            ("bogus x", 0),
            ("stats frob(x)", 6),
            ("filter @message like", 20),
            ("parse @message \"* *\" as a", 15),
            ("fields a | | fields b", 11),
            ("limit 0", 6),
            ("filter x like /(/", 14),
            ("filter \"open", 7),
        ] {
            let e = parse(q).unwrap_err();
            assert_eq!(e.pos, pos, "{q}: {e:?}");
        }
        for q in [
            "",
            "|",
            "fields €",
            "filter 1 = 1e999999",
            "sort",
            "stats count(*) by bin(0m)",
            "\u{7f}",
        ] {
            let _ = parse(q);
        }
        assert_eq!(parse::line_col("a\nbc", 3), (2, 2));
    }

    #[test]
    fn every_prefix_and_byte_flip_parses_or_errs_in_range() {
        let queries = [
            r#"parse @message "path=* status=*" as path, status | filter status >= 500 and path like /^\/api/ | stats count(*) as n, avg(status) by path, bin(1m) | sort n desc | limit 5"#,
            r#"fields `a b`, @ptr | filter x in [1, "two", -3.5] or not ispresent(y) | display x"#,
            "parse /(?<k>\\w+)=(?<v>ünï)/ | sort k asc, v",
        ];
        for q in queries {
            let mut cuts: Vec<String> = (0..=q.len())
                .filter(|i| q.is_char_boundary(*i))
                .map(|i| q[..i].to_owned())
                .collect();
            for (i, _) in q.char_indices() {
                for c in ['|', '"', '/', '(', ')', '[', ']', ',', ' ', '*', 'x', '\\'] {
                    let mut m = q.to_owned();
                    let end = i + q[i..].chars().next().map_or(0, char::len_utf8);
                    m.replace_range(i..end, &c.to_string());
                    cuts.push(m);
                }
            }
            for c in cuts {
                match parse(&c) {
                    Err(e) => assert!(e.pos <= c.len(), "{c}: {e:?}"),
                    Ok(cmds) => {
                        let mut r = Run::new(&cmds, 10);
                        let _ = r.push(ev(1, "k=v path=/api status=503", "s"));
                        let _ = r.push(ev(2, r#"{"x": 1}"#, "s"));
                        let _ = r.finish(10);
                    }
                }
            }
        }
        assert!(
            parse(queries[0]).is_ok() && parse(queries[1]).is_ok() && parse(queries[2]).is_ok()
        );
    }

    #[test]
    fn stop_before_the_runner_starts_cancels() {
        let reg = Registry::default();
        let q = reg
            .add("fields @message".into(), vec!["g".into()], 0)
            .unwrap();
        assert_eq!(q.state().status, Status::Scheduled);
        assert!(q.stop());
        assert!(!q.stop());
        let dir = tempfile::tempdir().unwrap();
        let job = Job {
            store: Arc::new(Store::open(&dir.path().join("s.redb")).unwrap()),
            sealer: Arc::new(crate::AesGcmSealer::new(zeroize::Zeroizing::new([1; 32]))),
            account: "1".into(),
            cmds: parse("fields @message").unwrap(),
            start_ms: 0,
            end_ms: 1,
            max_rows: 10,
        };
        run_query(&job, &q);
        assert_eq!(q.state().status, Status::Cancelled);
        for _ in 0..MAX_CONCURRENT {
            reg.add("x".into(), vec![], 0).unwrap();
        }
        assert_eq!(
            reg.add("x".into(), vec![], 0).unwrap_err().code,
            "LimitExceededException"
        );
    }

    use super::run as run_query;
}
