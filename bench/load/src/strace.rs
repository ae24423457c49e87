//! Reads the summary `strace -c` prints (calls per system call), for the system benchmark's
//! syscalls-per-message measurement. The table is fixed-width: the dashed line under its header
//! gives each column's span, so a missing `errors` or `usecs/call` cell is read as empty, not
//! as a shifted column.

use std::collections::BTreeMap;

/// Calls per system call name, and the `total` line's count as `"total"`.
///
/// Lines that are not rows of the table (strace's own messages) are skipped.
pub fn calls(summary: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut spans: Option<Vec<(usize, usize)>> = None;
    let mut header: Option<&str> = None;
    for line in summary.lines() {
        if line.starts_with("------") {
            if spans.is_none() {
                spans = Some(dash_spans(line));
            }
            continue;
        }
        let Some(spans) = &spans else {
            header = Some(line);
            continue;
        };
        let Some(calls_col) = header.and_then(|h| column_of(h, spans, "calls")) else {
            continue;
        };
        let cell = |i: usize| {
            spans
                .get(i)
                .and_then(|&(a, b)| line.get(a.min(line.len())..b.min(line.len())))
                .unwrap_or("")
                .trim()
        };
        let name = line
            .get(spans.last().map_or(0, |s| s.0).min(line.len())..)
            .unwrap_or("")
            .trim();
        if let (false, Ok(n)) = (name.is_empty(), cell(calls_col).parse::<u64>()) {
            *out.entry(name.to_owned()).or_insert(0) += n;
        }
    }
    out
}

/// The `[start, end)` of each run of dashes.
fn dash_spans(line: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c == '-', start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, line.len()));
    }
    spans
}

/// Which span the header's `name` sits in.
fn column_of(header: &str, spans: &[(usize, usize)], name: &str) -> Option<usize> {
    let at = header.find(name)?;
    spans
        .iter()
        .position(|&(a, b)| at + name.len() > a && at < b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = "\
strace: Process 123 attached
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 52.10    0.104200          17      6012       412 recvmsg
 30.00    0.060000          10      6000           sendmsg
 10.00    0.020000           5      4000           epoll_wait
  7.90    0.015800           3      5266           futex
------ ----------- ----------- --------- --------- ----------------
100.00    0.200000          10     21278       412 total
";

    #[test]
    fn rows_and_total_are_read_by_column() {
        let c = calls(SUMMARY);
        assert_eq!(c.get("recvmsg"), Some(&6012));
        assert_eq!(c.get("sendmsg"), Some(&6000));
        assert_eq!(c.get("epoll_wait"), Some(&4000));
        assert_eq!(c.get("futex"), Some(&5266));
        assert_eq!(c.get("total"), Some(&21278));
        assert_eq!(c.len(), 5);
    }

    #[test]
    fn a_total_line_without_usecs_per_call_still_reads_its_calls() {
        let s = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
100.00    0.000010           1        10           read
------ ----------- ----------- --------- --------- ----------------
100.00    0.000010                    10           total
";
        let c = calls(s);
        assert_eq!(c.get("read"), Some(&10));
        assert_eq!(c.get("total"), Some(&10));
    }

    #[test]
    fn no_table_gives_nothing() {
        assert!(
            calls("strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted\n").is_empty()
        );
    }
}
