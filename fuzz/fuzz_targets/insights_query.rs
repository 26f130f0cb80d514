//! Logs Insights: a query string is parsed and, when it parses, run over a
//! few fixed events.
//!
//! Properties, beyond "never panics":
//! - a parse error's position lies within the query (MalformedQueryException
//!   reports it as line and column);
//! - a query that parses runs to the end over any events.
#![no_main]

use ferry_logs::insights::exec::{Event, Run};
use ferry_logs::insights::parse::{line_col, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    match parse(q) {
        Err(e) => {
            assert!(e.pos <= q.len(), "error position {} past the query", e.pos);
            let (line, col) = line_col(q, e.pos);
            assert!(line >= 1 && col >= 1);
        }
        Ok(cmds) => {
            let mut run = Run::new(&cmds, 100);
            for (i, m) in [
                "GET /a status=200 ms=12",
                r#"{"status": 500, "req": {"path": "/x"}}"#,
                "",
                "ünïcödé = * | \"",
            ]
            .iter()
            .enumerate()
            {
                let e = Event {
                    timestamp: i as i64 * 60_000,
                    ingestion_time: 0,
                    message: (*m).to_owned(),
                    stream: "s".into(),
                    log: "1:g".into(),
                    group: "g".into(),
                    pos: i as u64,
                };
                if run.push(e).is_break() {
                    break;
                }
            }
            let (rows, _cols) = run.finish(100);
            assert!(rows.len() <= 100);
        }
    }
});
