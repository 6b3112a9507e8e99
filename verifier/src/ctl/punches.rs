//! `vouchctl punches` and `vouchctl review-punches`: exports stream the API's pages to stdout as
//! they arrive (CSV with RFC 4180 quoting, or one JSON array), so an export of the whole mirror
//! never sits in memory; every page request is recorded in the verifier's audit trail.

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use std::io::Write;

use super::client::Client;
use super::seg;
use crate::api::{PunchCursor, PunchPage, PunchView, ReviewBody, ReviewView};

/// Records per page requested from the API: the most the server gives.
const PAGE: usize = crate::engine::MAX_PUNCH_PAGE;

/// The CSV header, exactly.
pub const CSV_HEADER: &str = "device,seq,time,employee,kind,method,held";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An array of objects with device, seq, time, employee, kind, method, held, reviewed,
    /// hash, prev_hash, boot (enough to re-check the chain).
    Json,
    /// `device,seq,time,employee,kind,method,held`; time RFC 3339 UTC, method empty when absent.
    Csv,
}

#[derive(Debug, Args)]
pub struct PunchesArgs {
    /// The device whose records to export.
    #[arg(required_unless_present = "all")]
    pub id: Option<String>,
    /// Export every device's records, in (device, seq) order.
    #[arg(long, conflicts_with = "id")]
    pub all: bool,
    /// Only records with seq above this one (with a device ID).
    #[arg(long, conflicts_with = "all")]
    pub since: Option<u64>,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The device whose held records were reviewed.
    pub id: String,
    /// Mark held records with seq up to this one reviewed.
    #[arg(long)]
    pub through: u64,
    /// Who checked the held records, and how (recorded in the audit trail).
    #[arg(long)]
    pub reason: String,
}

/// `vouchctl punches`.
pub fn export(c: &Client, args: &PunchesArgs) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let fetch = |cursor: Option<&PunchCursor>| -> Result<PunchPage> {
        let path = match (&args.id, cursor) {
            (Some(id), None) => format!(
                "/api/devices/{}/punches?since={}&limit={PAGE}",
                seg(id),
                args.since.unwrap_or(0)
            ),
            (Some(id), Some(cur)) => format!(
                "/api/devices/{}/punches?since={}&limit={PAGE}",
                seg(id),
                cur.seq
            ),
            (None, None) => format!("/api/punches?limit={PAGE}"),
            (None, Some(cur)) => format!(
                "/api/punches?after_device={}&after_seq={}&limit={PAGE}",
                seg(&cur.device),
                cur.seq
            ),
        };
        c.get(&path)
    };
    stream(fetch, args.format, &mut out)?;
    out.flush()?;
    Ok(())
}

/// Writes every page `fetch` returns (from no cursor on, following `next`) to `out`.
pub fn stream(
    mut fetch: impl FnMut(Option<&PunchCursor>) -> Result<PunchPage>,
    format: Format,
    out: &mut impl Write,
) -> Result<()> {
    let mut cursor: Option<PunchCursor> = None;
    let mut first = true;
    match format {
        Format::Csv => writeln!(out, "{CSV_HEADER}")?,
        Format::Json => write!(out, "[")?,
    }
    loop {
        let page = fetch(cursor.as_ref())?;
        for p in &page.punches {
            match format {
                Format::Csv => writeln!(out, "{}", csv_row(p))?,
                Format::Json => {
                    if !first {
                        write!(out, ",")?;
                    }
                    write!(out, "\n  {}", serde_json::to_string(p)?)?;
                }
            }
            first = false;
        }
        match page.next {
            Some(next) => {
                if cursor.as_ref() == Some(&next) {
                    bail!(
                        "the verifier returned the same export cursor twice ({}/{})",
                        next.device,
                        next.seq
                    );
                }
                cursor = Some(next);
            }
            None => break,
        }
    }
    if format == Format::Json {
        writeln!(out, "{}]", if first { "" } else { "\n" })?;
    }
    Ok(())
}

/// One CSV line (without the line end).
pub fn csv_row(p: &PunchView) -> String {
    let seq = p.seq.to_string();
    let fields = [
        p.device.as_str(),
        seq.as_str(),
        p.time.as_str(),
        p.employee.as_str(),
        p.kind.as_str(),
        p.method.as_deref().unwrap_or(""),
        if p.held { "true" } else { "false" },
    ];
    fields.map(csv_field).join(",")
}

/// A field quoted as RFC 4180 asks when it holds a comma, a quote or a line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// `vouchctl review-punches`: one call marks a bounded number of records, so it calls
/// again until the verifier says none remain, and prints the total.
pub fn review(c: &Client, args: &ReviewArgs) -> Result<()> {
    let body = ReviewBody {
        through: args.through,
        reason: args.reason.clone(),
    };
    let path = format!("/api/devices/{}/punches/review", seg(&args.id));
    let (v, total) = review_all(|| c.post_json(&path, &body))?;
    println!(
        "{}: {total} held records marked reviewed, {} held records still unreviewed",
        v.device, v.held_unreviewed
    );
    Ok(())
}

/// Calls `post` until an answer has no `more`; the last answer and the records marked in all.
pub fn review_all(mut post: impl FnMut() -> Result<ReviewView>) -> Result<(ReviewView, u64)> {
    let mut total = 0u64;
    loop {
        let v = post()?;
        total = total.saturating_add(v.reviewed);
        if !v.more {
            return Ok((v, total));
        }
        if v.reviewed == 0 {
            bail!(
                "the verifier says more held records of {} remain but marked none",
                v.device
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(device: &str, seq: u64, employee: &str, method: Option<&str>) -> PunchView {
        PunchView {
            device: device.into(),
            seq,
            time: "2026-12-02T08:00:00Z".into(),
            unix_time: 0,
            employee: employee.into(),
            kind: "in".into(),
            method: method.map(str::to_owned),
            held: seq.is_multiple_of(2),
            reviewed: false,
            hash: "00".into(),
            prev_hash: "00".into(),
            boot: "b".into(),
        }
    }

    /// Pages of two records each, over `n` records of device t1.
    fn pages(n: u64) -> impl FnMut(Option<&PunchCursor>) -> Result<PunchPage> {
        move |cursor| {
            let from = cursor.map_or(1, |c| c.seq + 1);
            let to = (from + 1).min(n);
            let punches: Vec<PunchView> = (from..=to)
                .map(|s| view("t1", s, &format!("E{s}"), Some("card")))
                .collect();
            let next = (to < n).then(|| PunchCursor {
                device: "t1".into(),
                seq: to,
            });
            Ok(PunchPage { punches, next })
        }
    }

    #[test]
    fn the_csv_header_is_exactly_the_documented_one_and_rows_follow_it() {
        let mut out = Vec::new();
        stream(pages(3), Format::Csv, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "device,seq,time,employee,kind,method,held");
        assert_eq!(lines[1], "t1,1,2026-12-02T08:00:00Z,E1,in,card,false");
        assert_eq!(lines.len(), 4, "every page's records, once: {text}");
        assert_eq!(lines[3], "t1,3,2026-12-02T08:00:00Z,E3,in,card,false");
    }

    #[test]
    fn csv_fields_with_commas_or_quotes_are_quoted_and_an_absent_method_is_empty() {
        let row = csv_row(&view("t1", 2, "a,b\"c", None));
        assert_eq!(row, "t1,2,2026-12-02T08:00:00Z,\"a,b\"\"c\",in,,true");
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("x\ny"), "\"x\ny\"");
    }

    #[test]
    fn a_json_export_over_several_pages_is_one_array_of_every_record() {
        let mut out = Vec::new();
        stream(pages(5), Format::Json, &mut out).unwrap();
        let v: Vec<PunchView> = serde_json::from_slice(&out).unwrap();
        assert_eq!(v.iter().map(|p| p.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        let mut empty = Vec::new();
        stream(pages(0), Format::Json, &mut empty).unwrap();
        let v: Vec<PunchView> = serde_json::from_slice(&empty).unwrap();
        assert!(v.is_empty());
    }

    #[test]
    fn review_punches_calls_again_until_nothing_remains_and_totals_the_marks() {
        let mut left = 25_000u64;
        let mut calls = 0;
        let (last, total) = review_all(|| {
            calls += 1;
            let n = left.min(10_000);
            left -= n;
            Ok(ReviewView {
                device: "t1".into(),
                reviewed: n,
                held_unreviewed: left,
                more: left > 0,
            })
        })
        .unwrap();
        assert_eq!((calls, total, last.held_unreviewed), (3, 25_000, 0));
        let stuck = || {
            Ok(ReviewView {
                device: "t1".into(),
                reviewed: 0,
                held_unreviewed: 5,
                more: true,
            })
        };
        let err = review_all(stuck).unwrap_err();
        assert!(err.to_string().contains("marked none"), "{err}");
    }

    #[test]
    fn a_cursor_that_does_not_move_is_an_error_not_an_endless_export() {
        let stuck = |_: Option<&PunchCursor>| {
            Ok(PunchPage {
                punches: vec![view("t1", 1, "E1", None)],
                next: Some(PunchCursor {
                    device: "t1".into(),
                    seq: 1,
                }),
            })
        };
        let err = stream(stuck, Format::Csv, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("same export cursor"), "{err}");
    }
}
