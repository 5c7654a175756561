//! `dbmaint report --format html`: one run as one self-contained page (no
//! script, no network: inline CSS and SVG), from the run's event log and
//! report (`PLAN-runID-STAMP.jsonl` and `.report.json` in the log
//! directory). A timeline of the steps in parallel lanes with retries and
//! throttled waits marked, predicted against actual figures per step, and
//! each retention step's batches over time; every chart has a table that
//! says the same in text.

use serde_json::Value;

use crate::report::text::human_ms;
use crate::run::execplan::{human_bytes, human_count};

/// Text for HTML: `<`, `>`, `&` and quotes escaped (step names and errors
/// come from plans and servers).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Milliseconds since the epoch of an RFC 3339 time.
fn ms(t: &Value) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(t.as_str()?)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// One step as the timeline draws it.
#[derive(Debug, Clone)]
struct Bar {
    id: String,
    op: String,
    status: String,
    start: i64,
    end: i64,
    lane: usize,
}

/// Steps on lanes: each on the first lane free at its start, so steps
/// that ran at once sit on separate lanes.
fn lanes(mut bars: Vec<Bar>) -> Vec<Bar> {
    bars.sort_by_key(|b| (b.start, b.end));
    let mut ends: Vec<i64> = vec![];
    for b in &mut bars {
        let lane = ends.iter().position(|e| *e <= b.start).unwrap_or(ends.len());
        if lane == ends.len() {
            ends.push(b.end);
        } else {
            ends[lane] = b.end;
        }
        b.lane = lane;
    }
    bars
}

fn color(status: &str) -> &'static str {
    match status {
        "succeeded" => "#2e7d32",
        "partial" => "#ef8f00",
        "failed" => "#c62828",
        "deferred" => "#6d6d6d",
        _ => "#9e9e9e",
    }
}

/// `+12.5%`, or `—` without a prediction.
fn error_pct(predicted: u64, actual: u64) -> String {
    if predicted == 0 {
        if actual == 0 { "0%".into() } else { "—".into() }
    } else {
        format!("{:+.1}%", (actual as f64 - predicted as f64) * 100.0 / predicted as f64)
    }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}table{border-collapse:collapse;margin:8px 0}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}\
.ok{color:#2e7d32}.bad{color:#c62828}svg{background:#fafafa;border:1px solid #ddd}\
.legend span{display:inline-block;margin-right:14px}.sw{display:inline-block;width:10px;height:10px;margin-right:4px}";

/// The page of one run: `report` is the run's report (JSON), `events` its
/// event log in order.
pub fn run_page(report: &Value, events: &[Value]) -> String {
    let steps = report["steps"].as_array().cloned().unwrap_or_default();
    let mut bars: Vec<Bar> = steps
        .iter()
        .filter_map(|s| {
            let start = ms(&s["started_at"])?;
            let end = ms(&s["finished_at"]).unwrap_or(start).max(start);
            Some(Bar {
                id: s["id"].as_str().unwrap_or("").to_string(),
                op: s["op"].as_str().unwrap_or("").to_string(),
                status: s["status"].as_str().unwrap_or("").to_string(),
                start,
                end,
                lane: 0,
            })
        })
        .collect();
    bars = lanes(bars);
    let t0 = bars.iter().map(|b| b.start).min().unwrap_or(0);
    let t1 = bars.iter().map(|b| b.end).max().unwrap_or(t0).max(t0 + 1);
    let title = format!(
        "Run {} of plan `{}`",
        report["run_id"].as_i64().unwrap_or(0),
        report["plan"].as_str().unwrap_or("")
    );
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        escape(&title)
    );
    h.push_str(&format!("<h1>{}</h1>\n", escape(&title)));
    h.push_str(&format!(
        "<p>Target {}; {} (exit code {}) in {}.</p>\n",
        escape(report["target"].as_str().unwrap_or("")),
        escape(report["status"].as_str().unwrap_or("")),
        report["exit_code"].as_i64().unwrap_or(0),
        human_ms(report["duration_ms"].as_u64().unwrap_or(0))
    ));
    h.push_str(&timeline(&bars, events, t0, t1));
    h.push_str(&figures(&steps));
    h.push_str(&batches(&steps, events));
    h.push_str("</body></html>\n");
    h
}

/// Waits marked on the timeline: lock retries (a point) and throttled
/// waits (a span), per step.
struct Marks {
    retries: Vec<(String, i64, String)>,
    throttled: Vec<(String, i64, i64, String)>,
}

fn marks(events: &[Value], end: i64) -> Marks {
    let mut m = Marks {
        retries: vec![],
        throttled: vec![],
    };
    let mut open: Vec<(String, i64, String)> = vec![];
    for e in events {
        let (Some(at), Some(step)) = (ms(&e["at"]), e["step"].as_str()) else {
            continue;
        };
        match e["event"].as_str() {
            Some("retrying") => m
                .retries
                .push((step.into(), at, e["error"].as_str().unwrap_or("").into())),
            Some("throttled") => open.push((step.into(), at, e["reason"].as_str().unwrap_or("").into())),
            Some("throttle_lifted") => {
                if let Some(i) = open.iter().position(|(s, _, _)| s == step) {
                    let (s, from, why) = open.remove(i);
                    m.throttled.push((s, from, at, why));
                }
            }
            _ => {}
        }
    }
    // A wait the run ended in (deferred, interrupted).
    m.throttled
        .extend(open.into_iter().map(|(s, from, why)| (s, from, end, why)));
    m
}

const WIDTH: f64 = 1000.0;
const LANE: f64 = 34.0;

fn timeline(bars: &[Bar], events: &[Value], t0: i64, t1: i64) -> String {
    let lanes_n = bars.iter().map(|b| b.lane + 1).max().unwrap_or(1);
    let x = |t: i64| 10.0 + (t - t0) as f64 * (WIDTH - 20.0) / (t1 - t0) as f64;
    let height = 30.0 + lanes_n as f64 * LANE;
    let m = marks(events, t1);
    let mut s = format!(
        "<h2>Timeline</h2>\n<p class=\"legend\"><span><i class=\"sw\" style=\"background:#2e7d32\"></i>succeeded</span>\
         <span><i class=\"sw\" style=\"background:#ef8f00\"></i>partial</span><span><i class=\"sw\" style=\"background:#c62828\"></i>failed</span>\
         <span><i class=\"sw\" style=\"background:#6d6d6d\"></i>deferred</span><span><i class=\"sw\" style=\"background:#ffd54f\"></i>throttled wait</span>\
         <span>▼ lock retry</span></p>\n<svg role=\"img\" aria-label=\"timeline of the run's steps\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" xmlns=\"http://www.w3.org/2000/svg\">\n"
    );
    s.push_str(&format!(
        "<text x=\"10\" y=\"{}\" font-size=\"11\">0</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>\n",
        height - 6.0,
        WIDTH - 10.0,
        height - 6.0,
        human_ms((t1 - t0) as u64)
    ));
    for b in bars {
        let y = 10.0 + b.lane as f64 * LANE;
        let (x0, x1) = (x(b.start), x(b.end).max(x(b.start) + 2.0));
        s.push_str(&format!(
            "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"24\" fill=\"{}\"><title>{} ({}): {}, {}</title></rect>\n",
            x1 - x0,
            color(&b.status),
            escape(&b.id),
            escape(&b.op),
            escape(&b.status),
            human_ms((b.end - b.start) as u64)
        ));
        for (_, from, to, why) in m.throttled.iter().filter(|t| t.0 == b.id) {
            s.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"8\" fill=\"#ffd54f\"><title>throttled: {}</title></rect>\n",
                x(*from),
                y + 16.0,
                (x(*to) - x(*from)).max(1.0),
                escape(why)
            ));
        }
        for (_, at, why) in m.retries.iter().filter(|r| r.0 == b.id) {
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#c62828\">▼<title>lock retry: {}</title></text>\n",
                x(*at),
                y + 2.0,
                escape(why)
            ));
        }
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"#000\">{}</text>\n",
            x0 + 3.0,
            y + 16.0,
            escape(&b.id)
        ));
    }
    s.push_str(
        "</svg>\n<table><caption>The timeline in text</caption><tr><th>step</th><th>operation</th><th>status</th>\
                <th>lane</th><th>starts at</th><th>took</th><th>lock retries</th><th>throttled</th></tr>\n",
    );
    for b in bars {
        let waited: i64 = m.throttled.iter().filter(|t| t.0 == b.id).map(|t| t.2 - t.1).sum();
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>+{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&b.id),
            escape(&b.op),
            escape(&b.status),
            b.lane + 1,
            human_ms((b.start - t0) as u64),
            human_ms((b.end - b.start) as u64),
            m.retries.iter().filter(|r| r.0 == b.id).count(),
            if waited > 0 {
                human_ms(waited as u64)
            } else {
                "—".into()
            }
        ));
    }
    s.push_str("</table>\n");
    s
}

fn figures(steps: &[Value]) -> String {
    let mut s = String::from(
        "<h2>Predicted and actual</h2>\n<table><tr><th>step</th><th>rows predicted</th><th>rows</th><th>error</th>\
         <th>bytes predicted</th><th>bytes given back or written</th><th>error</th></tr>\n",
    );
    for st in steps {
        let p = &st["predicted"];
        let (pr, r) = (p["rows"].as_u64().unwrap_or(0), st["rows"].as_u64().unwrap_or(0));
        let (pb, b) = (p["bytes"].as_u64().unwrap_or(0), st["bytes"].as_u64().unwrap_or(0));
        let approx = if p["fidelity"] == "exact" { "" } else { "~" };
        // Bytes freed for reuse inside tables are no prediction of the
        // bytes given back: shown, never set against them.
        let (pbytes, berr) = if st["predicted_reusable"] == true {
            (format!("~{} freed for reuse", human_bytes(pb)), "—".to_string())
        } else {
            (format!("{approx}{}", human_bytes(pb)), error_pct(pb, b))
        };
        s.push_str(&format!(
            "<tr><td>{}</td><td>{approx}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(st["id"].as_str().unwrap_or("")),
            human_count(pr),
            human_count(r),
            error_pct(pr, r),
            pbytes,
            human_bytes(b),
            berr
        ));
    }
    s.push_str("</table>\n");
    s
}

/// Each retention step's batches: rows per second over time.
fn batches(steps: &[Value], events: &[Value]) -> String {
    let mut s = String::new();
    for st in steps {
        let id = st["id"].as_str().unwrap_or("");
        let list: Vec<(i64, u64, u64)> = events
            .iter()
            .filter(|e| e["event"] == "batch_done" && e["step"] == id)
            .filter_map(|e| {
                Some((
                    ms(&e["at"])?,
                    e["rows"].as_u64().unwrap_or(0),
                    e["duration_ms"].as_u64().unwrap_or(0),
                ))
            })
            .collect();
        if list.is_empty() {
            continue;
        }
        let start = ms(&st["started_at"]).unwrap_or(list[0].0);
        let end = list.iter().map(|b| b.0).max().unwrap_or(start).max(start + 1);
        let rate = |b: &(i64, u64, u64)| b.1 as f64 * 1000.0 / b.2.max(1) as f64;
        let top = list.iter().map(rate).fold(1.0, f64::max);
        let (w, hgt) = (WIDTH, 160.0);
        s.push_str(&format!(
            "<h2>Batches of {}</h2>\n<svg role=\"img\" aria-label=\"rows per second of each batch of {}\" width=\"{w}\" height=\"{hgt}\" \
             viewBox=\"0 0 {w} {hgt}\" xmlns=\"http://www.w3.org/2000/svg\">\n",
            escape(id),
            escape(id)
        ));
        let bw = ((w - 20.0) / list.len() as f64).clamp(1.0, 12.0);
        for b in &list {
            let x = 10.0 + (b.0 - start) as f64 * (w - 20.0 - bw) / (end - start) as f64;
            let bh = (rate(b) / top * (hgt - 30.0)).max(1.0);
            s.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" fill=\"#1565c0\"/>\n",
                hgt - 20.0 - bh
            ));
        }
        s.push_str(&format!(
            "<text x=\"10\" y=\"12\" font-size=\"11\">{} rows/s</text><text x=\"10\" y=\"{}\" font-size=\"11\">0</text>\
             <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>\n</svg>\n",
            human_count(top as u64),
            hgt - 6.0,
            w - 10.0,
            hgt - 6.0,
            human_ms((end - start) as u64)
        ));
        let mut rates: Vec<f64> = list.iter().map(rate).collect();
        rates.sort_by(f64::total_cmp);
        let longest = list.iter().map(|b| b.2).max().unwrap_or(0);
        let rows: u64 = list.iter().map(|b| b.1).sum();
        s.push_str(&format!(
            "<table><caption>The batches of {} in text</caption><tr><th>batches</th><th>rows</th><th>median rows/s</th>\
             <th>slowest rows/s</th><th>longest batch</th></tr><tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>\n",
            escape(id),
            human_count(list.len() as u64),
            human_count(rows),
            human_count(rates[rates.len() / 2] as u64),
            human_count(rates[0] as u64),
            human_ms(longest)
        ));
    }
    s
}

/// `dbmaint history --format html`: for each plan in the journal's list,
/// its runs over time — duration and rows deleted per run, coloured by
/// outcome — and the same as a table.
pub fn history_page(v: &Value) -> String {
    let runs = v["runs"].as_array().cloned().unwrap_or_default();
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>dbmaint history</title><style>{STYLE}</style></head><body>\n<h1>dbmaint history</h1>\n"
    );
    if runs.is_empty() {
        h.push_str("<p>No runs in the journal match.</p>\n</body></html>\n");
        return h;
    }
    let mut plans: Vec<String> = runs
        .iter()
        .filter_map(|r| r["plan"].as_str().map(String::from))
        .collect();
    plans.sort();
    plans.dedup();
    for plan in plans {
        // Oldest first, left to right.
        let mut mine: Vec<&Value> = runs.iter().filter(|r| r["plan"] == plan.as_str()).collect();
        // (SQLite keeps run times to the second: the id breaks ties.)
        mine.sort_by_key(|r| (ms(&r["started_at"]).unwrap_or(0), r["id"].as_i64().unwrap_or(0)));
        let rows = |r: &Value| -> u64 {
            r["steps"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter(|s| s["op"] == "retention" || s["op"] == "partitions")
                        .filter_map(|s| s["rows"].as_u64())
                        .sum()
                })
                .unwrap_or(0)
        };
        h.push_str(&format!("<h2>Runs of <code>{}</code></h2>\n", escape(&plan)));
        for (what, value, shown) in [
            (
                "duration",
                &(|r: &Value| r["duration_ms"].as_u64().unwrap_or(0)) as &dyn Fn(&Value) -> u64,
                &(|n: u64| human_ms(n)) as &dyn Fn(u64) -> String,
            ),
            ("rows deleted", &rows, &(|n: u64| human_count(n))),
        ] {
            let top = mine.iter().map(|r| value(r)).max().unwrap_or(0).max(1);
            let (w, hgt) = (WIDTH, 140.0);
            let bw = ((w - 20.0) / mine.len() as f64 - 2.0).clamp(2.0, 40.0);
            h.push_str(&format!(
                "<svg role=\"img\" aria-label=\"{what} of each run of {}\" width=\"{w}\" height=\"{hgt}\" viewBox=\"0 0 {w} {hgt}\" xmlns=\"http://www.w3.org/2000/svg\">\n",
                escape(&plan)
            ));
            for (i, r) in mine.iter().enumerate() {
                let x = 10.0 + i as f64 * (bw + 2.0);
                let bh = (value(r) as f64 / top as f64 * (hgt - 30.0)).max(1.0);
                h.push_str(&format!(
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>run {}: {}</title></rect>\n",
                    hgt - 20.0 - bh,
                    color(r["status"].as_str().unwrap_or("")),
                    r["id"],
                    shown(value(r))
                ));
            }
            h.push_str(&format!(
                "<text x=\"10\" y=\"12\" font-size=\"11\">{what}, at most {}</text><text x=\"10\" y=\"{}\" font-size=\"11\">oldest</text>\
                 <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">newest</text>\n</svg>\n",
                shown(top),
                hgt - 6.0,
                w - 10.0,
                hgt - 6.0
            ));
        }
        h.push_str(&format!(
            "<table><caption>The runs of {} in text</caption><tr><th>run</th><th>started</th><th>status</th><th>took</th><th>rows deleted</th><th>bytes given back</th></tr>\n",
            escape(&plan)
        ));
        for r in &mine {
            let bytes: u64 = r["steps"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter(|s| s["op"] != "backup")
                        .filter_map(|s| s["bytes"].as_u64())
                        .sum()
                })
                .unwrap_or(0);
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                r["id"],
                escape(r["started_at"].as_str().unwrap_or("")),
                escape(r["status"].as_str().unwrap_or("")),
                human_ms(r["duration_ms"].as_u64().unwrap_or(0)),
                human_count(rows(r)),
                human_bytes(bytes)
            ));
        }
        h.push_str("</table>\n");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(id: &str, from: &str, to: &str) -> Value {
        json!({"id": id, "op": "retention", "status": "succeeded", "started_at": from, "finished_at": to,
               "rows": 110, "bytes": 0, "predicted": {"rows": 100, "bytes": 0, "fidelity": "exact"}})
    }

    #[test]
    fn steps_that_ran_at_once_sit_on_separate_lanes() {
        let b = |id: &str, start, end| Bar {
            id: id.into(),
            op: String::new(),
            status: String::new(),
            start,
            end,
            lane: 0,
        };
        let got = lanes(vec![b("a", 0, 10), b("b", 5, 20), b("c", 10, 15), b("d", 21, 30)]);
        let lane = |id: &str| got.iter().find(|x| x.id == id).map(|x| x.lane);
        assert_eq!(
            (lane("a"), lane("b"), lane("c"), lane("d")),
            (Some(0), Some(1), Some(0), Some(0))
        );
    }

    #[test]
    fn names_are_escaped_and_figures_say_their_error() {
        let report = json!({"run_id": 3, "plan": "p<1>", "status": "succeeded", "exit_code": 0, "duration_ms": 1000,
            "target": "x", "steps": [step("<script>alert(1)</script>", "2026-12-02T10:00:00Z", "2026-12-02T10:00:01Z")]});
        let page = run_page(&report, &[]);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("+10.0%"), "110 rows against 100 predicted");
        assert!(
            !page.contains("<link") && !page.contains("src="),
            "self-contained: {page}"
        );
    }

    #[test]
    fn throttled_waits_and_retries_are_marked_with_their_reasons() {
        let report = json!({"run_id": 1, "plan": "p", "status": "succeeded", "exit_code": 0, "duration_ms": 9000,
            "target": "x", "steps": [step("purge", "2026-12-02T10:00:00Z", "2026-12-02T10:00:09Z")]});
        let events = vec![
            json!({"event": "retrying", "step": "purge", "error": "lock timeout", "at": "2026-12-02T10:00:01Z"}),
            json!({"event": "throttled", "step": "purge", "reason": "replica lag 12 s over 10 s", "at": "2026-12-02T10:00:02Z"}),
            json!({"event": "throttle_lifted", "step": "purge", "waited_ms": 5000, "at": "2026-12-02T10:00:07Z"}),
            json!({"event": "batch_done", "step": "purge", "rows": 50, "duration_ms": 100, "at": "2026-12-02T10:00:01.5Z"}),
            json!({"event": "batch_done", "step": "purge", "rows": 60, "duration_ms": 200, "at": "2026-12-02T10:00:08Z"}),
        ];
        let page = run_page(&report, &events);
        assert!(page.contains("throttled: replica lag 12 s over 10 s"), "{page}");
        assert!(page.contains("lock retry: lock timeout"));
        assert!(page.contains("<td>5.0 s</td>"), "the text table says the wait: {page}");
        assert!(
            page.contains("Batches of purge") && page.contains("<td>110</td>"),
            "{page}"
        );
    }
}
