//! Every query the dashboards and the alert rules run, and a small PromQL reader.
//!
//! Shared by the host lint (`cargo xtask test`, [`super::lint`]) and the live VM test
//! (`tests/tests/dashboards_live.rs` includes this file with `#[path]`), so both look at the
//! same list: panel targets, annotation queries, `label_values` variable queries and alert
//! expressions. No IO here: callers pass the texts in.
//!
//! The PromQL reader is no full parser. It tokenizes an expression and finds what the checks
//! need: the selectors (metric name and label matchers), the labels named by `by`, `without`,
//! `on`, `ignoring`, `group_left` and `group_right`, and the range of each range vector with the
//! function it is passed to. Anything it cannot tokenize is an error, never skipped.

use serde_json::Value;

/// Where a query is used, which decides how it runs (range or instant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A panel target drawn over time (`range: true`).
    Range,
    /// A panel target evaluated once at the end of the time range (`instant: true`).
    Instant,
    /// An annotation query (a range query; each point becomes an annotation).
    Annotation,
    /// A variable's `label_values(selector, label)`: `expr` holds the selector.
    Variable {
        /// The label whose values the variable offers.
        label: String,
    },
    /// An alert rule's `expr`.
    Alert,
}

/// One query of a dashboard or of the alert rules.
#[derive(Debug, Clone)]
pub struct Query {
    /// The file it is in (`sipsctp-overview.json`, `alerts.yml`).
    pub file: String,
    /// The panel's id (annotations, variables and alerts have none).
    pub panel_id: Option<u64>,
    /// The panel's title, the annotation's or variable's name, or the alert's name.
    pub title: String,
    /// The target's `refId` (empty where there is none).
    pub ref_id: String,
    /// The expression as written, template variables included.
    pub expr: String,
    /// The target's `legendFormat` (empty where there is none).
    pub legend: String,
    /// How it runs.
    pub kind: Kind,
}

impl Query {
    /// `file: panel N "title" ref` for messages.
    pub fn name(&self) -> String {
        match self.panel_id {
            Some(id) => format!(
                "{}: panel {id} \"{}\" {}",
                self.file, self.title, self.ref_id
            ),
            None => format!("{}: {:?} \"{}\"", self.file, self.kind, self.title),
        }
    }
}

/// The panels of a dashboard, those inside rows included, in order.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        for inner in p["panels"].as_array().into_iter().flatten() {
            out.push(inner);
        }
    }
    out
}

/// Every query of a dashboard: panel targets, annotation queries (but Grafana's built-in one)
/// and `label_values` variables.
pub fn dashboard_queries(file: &str, dashboard: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let instant =
                t["instant"].as_bool() == Some(true) && t["range"].as_bool() != Some(true);
            out.push(Query {
                file: file.to_owned(),
                panel_id: p["id"].as_u64(),
                title: p["title"].as_str().unwrap_or_default().to_owned(),
                ref_id: t["refId"].as_str().unwrap_or_default().to_owned(),
                expr: t["expr"].as_str().unwrap_or_default().to_owned(),
                legend: t["legendFormat"].as_str().unwrap_or_default().to_owned(),
                kind: if instant { Kind::Instant } else { Kind::Range },
            });
        }
    }
    for a in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if a["builtIn"].as_u64() == Some(1) {
            continue;
        }
        out.push(Query {
            file: file.to_owned(),
            panel_id: None,
            title: a["name"].as_str().unwrap_or_default().to_owned(),
            ref_id: String::new(),
            expr: a["target"]["expr"].as_str().unwrap_or_default().to_owned(),
            legend: a["titleFormat"].as_str().unwrap_or_default().to_owned(),
            kind: Kind::Annotation,
        });
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] != "query" {
            continue;
        }
        // `query` is the editor's object (`{"query": "label_values(..)", ...}`) or a string.
        let def = v["query"]["query"]
            .as_str()
            .or_else(|| v["query"].as_str())
            .unwrap_or_default();
        let (selector, label) = label_values(def).unwrap_or((def.to_owned(), String::new()));
        out.push(Query {
            file: file.to_owned(),
            panel_id: None,
            title: v["name"].as_str().unwrap_or_default().to_owned(),
            ref_id: String::new(),
            expr: selector,
            legend: String::new(),
            kind: Kind::Variable { label },
        });
    }
    out
}

/// `label_values(selector, label)` split into its two arguments.
pub fn label_values(def: &str) -> Option<(String, String)> {
    let inner = def
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some((selector.trim().to_owned(), label.trim().to_owned()))
}

/// The alerts of a Prometheus rule file as this project writes it: `- alert: NAME` followed by
/// `expr: |` and the expression indented below it. An `expr` in any other form is an error (so
/// that none is missed).
///
/// # Errors
/// A rule whose `expr` is not a block scalar, or an alert without one.
pub fn alert_queries(file: &str, text: &str) -> Result<Vec<Query>, String> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut name: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim_start();
        if let Some(n) = t.strip_prefix("- alert:") {
            if let Some(prev) = name.take() {
                return Err(format!("{file}: alert {prev} has no `expr: |`"));
            }
            name = Some(n.trim().to_owned());
        } else if let Some(rest) = t.strip_prefix("expr:") {
            let Some(alert) = name.take() else {
                return Err(format!("{file}:{}: an expr outside an alert", i + 1));
            };
            if rest.trim() != "|" {
                return Err(format!(
                    "{file}:{}: write the expr of {alert} as a block (`expr: |`)",
                    i + 1
                ));
            }
            let indent = line.len() - t.len();
            let mut expr = String::new();
            while let Some(next) = lines.get(i + 1) {
                let nt = next.trim_start();
                if !nt.is_empty() && next.len() - nt.len() <= indent {
                    break;
                }
                expr.push_str(nt);
                expr.push('\n');
                i += 1;
            }
            out.push(Query {
                file: file.to_owned(),
                panel_id: None,
                title: alert,
                ref_id: String::new(),
                expr: expr.trim_end().to_owned(),
                legend: String::new(),
                kind: Kind::Alert,
            });
        }
        i += 1;
    }
    if let Some(prev) = name {
        return Err(format!("{file}: alert {prev} has no `expr: |`"));
    }
    Ok(out)
}

/// `expr` with Grafana's template variables replaced: `$__rate_interval` and `$__interval` by
/// `interval`, `$__range` by `range`, multi-value variables (`$job`, `$instance`, `$peer`) by
/// `.+` (Grafana's "All" of these dashboards).
#[allow(dead_code)] // used by tests/tests/dashboards_live.rs
pub fn substitute(expr: &str, interval: &str, range: &str) -> String {
    expr.replace("$__rate_interval", interval)
        .replace("$__interval", interval)
        .replace("$__range", range)
        .replace("$job", ".+")
        .replace("$instance", ".+")
        .replace("$peer", ".+")
}

/// An alert expression's signal: the expression left of its one top-level comparison
/// (`>`, `>=`, `<`, `<=`, `==`, `!=`), with that comparison and its threshold.
pub fn split_threshold(expr: &str) -> Option<(String, String, f64)> {
    let toks = tokenize(expr).ok()?;
    let mut depth = 0i32;
    let mut found = None;
    for t in &toks {
        match &t.tok {
            Tok::Punct(p) if p == "(" || p == "{" => depth += 1,
            Tok::Punct(p) if p == ")" || p == "}" => depth -= 1,
            Tok::Punct(p)
                if depth == 0 && [">", ">=", "<", "<=", "==", "!="].contains(&p.as_str()) =>
            {
                if found.is_some() {
                    return None;
                }
                found = Some((t.at, p.clone()));
            }
            _ => {}
        }
    }
    let (at, op) = found?;
    let rest = expr.get(at + op.len()..)?.trim();
    let threshold = rest.parse().ok()?;
    Some((expr.get(..at)?.trim().to_owned(), op, threshold))
}

/// A token and its byte offset.
#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    at: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    /// `$name` or `${name}` (a Grafana variable).
    Var(String),
    /// The text between `[` and `]`.
    Range(String),
    Punct(String),
}

fn tokenize(expr: &str) -> Result<Vec<Token>, String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let at = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            while b.get(i).is_some_and(|&c| c != b'\n') {
                i += 1;
            }
            continue;
        }
        let tok = if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            while b
                .get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
            {
                i += 1;
            }
            Tok::Ident(expr[at..i].to_owned())
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            while b
                .get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.')
            {
                i += 1;
            }
            Tok::Num(expr[at..i].to_owned())
        } else if c == b'"' || c == b'\'' || c == b'`' {
            i += 1;
            let mut s = String::new();
            loop {
                match b.get(i) {
                    None => return Err(format!("unterminated string at {at}")),
                    Some(&q) if q == c => break,
                    Some(b'\\') if c != b'`' => {
                        s.push(char::from(*b.get(i + 1).unwrap_or(&b'\\')));
                        i += 2;
                    }
                    Some(_) => {
                        let ch = expr[i..].chars().next().unwrap_or('?');
                        s.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            i += 1;
            Tok::Str(s)
        } else if c == b'$' {
            i += 1;
            if b.get(i) == Some(&b'{') {
                let end = expr[i..]
                    .find('}')
                    .ok_or_else(|| format!("unterminated ${{ at {at}"))?;
                i += end + 1;
            } else {
                while b
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                {
                    i += 1;
                }
            }
            Tok::Var(expr[at..i].to_owned())
        } else if c == b'[' {
            let end = expr[i..]
                .find(']')
                .ok_or_else(|| format!("unterminated [ at {at}"))?;
            i += end + 1;
            Tok::Range(expr[at + 1..i - 1].trim().to_owned())
        } else {
            let two = expr.get(i..i + 2).unwrap_or("");
            if ["=~", "!~", "!=", "==", ">=", "<="].contains(&two) {
                i += 2;
                Tok::Punct(two.to_owned())
            } else if b"(){},=<>+-*/%^@".contains(&c) {
                i += 1;
                Tok::Punct(char::from(c).to_string())
            } else {
                return Err(format!("unexpected character {:?} at {at}", char::from(c)));
            }
        };
        out.push(Token { tok, at });
    }
    Ok(out)
}

/// A label matcher of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// The label.
    pub label: String,
    /// `=`, `!=`, `=~` or `!~`.
    pub op: String,
    /// The value as written (template variables included).
    pub value: String,
}

/// A vector selector: a metric name (absent for `{__name__=...}` selectors) and its matchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// The metric name.
    pub metric: Option<String>,
    /// The label matchers.
    pub matchers: Vec<Matcher>,
}

/// What [`read`] finds in an expression.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// Every vector selector.
    pub selectors: Vec<Selector>,
    /// Labels named in `by`, `without`, `on`, `ignoring`, `group_left`, `group_right`.
    pub grouping: Vec<String>,
    /// Every range (`[5m]`) with the function it is an argument of (empty when none).
    pub ranges: Vec<(String, String)>,
    /// Every function or aggregation called.
    pub functions: Vec<String>,
}

impl Parsed {
    /// Whether an aggregation (`sum`, `max`, ...) is applied: then a result keeps only the
    /// labels of its `by` list.
    pub fn aggregates(&self) -> bool {
        self.functions
            .iter()
            .any(|f| AGGREGATIONS.contains(&f.as_str()))
    }
}

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "Inf",
    "NaN",
];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
];

/// Reads the selectors, grouping labels, ranges and functions of a PromQL expression.
///
/// # Errors
/// The expression does not tokenize, or a selector's matchers are malformed.
pub fn read(expr: &str) -> Result<Parsed, String> {
    let toks = tokenize(expr)?;
    let mut p = Parsed::default();
    // The function each open parenthesis belongs to.
    let mut stack: Vec<String> = Vec::new();
    let mut pending: Option<String> = None;
    let mut i = 0;
    let punct =
        |i: usize, s: &str| matches!(toks.get(i), Some(Token { tok: Tok::Punct(p), .. }) if p == s);
    while let Some(t) = toks.get(i) {
        match &t.tok {
            Tok::Ident(id) if GROUPING.contains(&id.as_str()) && punct(i + 1, "(") => {
                i += 2;
                while let Some(t) = toks.get(i) {
                    match &t.tok {
                        Tok::Ident(l) => p.grouping.push(l.clone()),
                        Tok::Punct(s) if s == "," => {}
                        Tok::Punct(s) if s == ")" => break,
                        other => return Err(format!("{other:?} in the label list of {id}")),
                    }
                    i += 1;
                }
            }
            Tok::Ident(id) if KEYWORDS.contains(&id.as_str()) => {}
            Tok::Ident(id) if punct(i + 1, "(") || AGGREGATIONS.contains(&id.as_str()) => {
                // The next "(" that is not a grouping list (those are read above) is the call's.
                p.functions.push(id.clone());
                pending = Some(id.clone());
            }
            Tok::Ident(id) => {
                let mut s = Selector {
                    metric: Some(id.clone()),
                    matchers: Vec::new(),
                };
                if punct(i + 1, "{") {
                    i = matchers(&toks, i + 2, &mut s.matchers)?;
                }
                p.selectors.push(s);
            }
            Tok::Punct(s) if s == "{" => {
                let mut sel = Selector {
                    metric: None,
                    matchers: Vec::new(),
                };
                i = matchers(&toks, i + 1, &mut sel.matchers)?;
                if let Some(m) = sel
                    .matchers
                    .iter()
                    .find(|m| m.label == "__name__" && m.op == "=")
                {
                    sel.metric = Some(m.value.clone());
                }
                p.selectors.push(sel);
            }
            Tok::Punct(s) if s == "(" => stack.push(pending.take().unwrap_or_default()),
            Tok::Punct(s) if s == ")" => {
                stack.pop();
            }
            Tok::Range(r) => {
                let f = stack
                    .iter()
                    .rev()
                    .find(|f| !f.is_empty())
                    .cloned()
                    .unwrap_or_default();
                let inner = stack.last().cloned().unwrap_or_default();
                p.ranges
                    .push((r.clone(), if inner.is_empty() { f } else { inner }));
            }
            _ => {}
        }
        i += 1;
    }
    Ok(p)
}

/// Reads matchers from `i` (after `{`) to the closing `}`; returns the index of the `}`.
fn matchers(toks: &[Token], mut i: usize, out: &mut Vec<Matcher>) -> Result<usize, String> {
    loop {
        match toks.get(i).map(|t| &t.tok) {
            Some(Tok::Punct(p)) if p == "}" => return Ok(i),
            Some(Tok::Punct(p)) if p == "," => i += 1,
            Some(Tok::Ident(label)) => {
                let op = match toks.get(i + 1).map(|t| &t.tok) {
                    Some(Tok::Punct(op)) if ["=", "!=", "=~", "!~"].contains(&op.as_str()) => {
                        op.clone()
                    }
                    other => return Err(format!("label {label}: no matcher operator ({other:?})")),
                };
                let value = match toks.get(i + 2).map(|t| &t.tok) {
                    Some(Tok::Str(v)) => v.clone(),
                    other => return Err(format!("label {label}: no quoted value ({other:?})")),
                };
                out.push(Matcher {
                    label: label.clone(),
                    op,
                    value,
                });
                i += 3;
            }
            other => return Err(format!("unexpected {other:?} in a selector")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_selectors_grouping_and_ranges() {
        let p = read(
            "histogram_quantile(0.95, sum by (le, kernel_retransmitted) (rate(\
             sipsctp_sip_transaction_duration_seconds_bucket{job=~\"$job\", method=\"INVITE\"}\
             [$__rate_interval]))) / on (job) group_left () max(up{a!~'x'})",
        )
        .unwrap();
        assert_eq!(p.selectors.len(), 2);
        assert_eq!(
            p.selectors[0].metric.as_deref(),
            Some("sipsctp_sip_transaction_duration_seconds_bucket")
        );
        assert_eq!(p.selectors[0].matchers[1].value, "INVITE");
        assert_eq!(p.selectors[1].matchers[0].op, "!~");
        assert_eq!(p.grouping, ["le", "kernel_retransmitted", "job"]);
        assert_eq!(
            p.ranges,
            [("$__rate_interval".to_owned(), "rate".to_owned())]
        );
        assert!(p.functions.contains(&"histogram_quantile".to_owned()));
    }

    #[test]
    fn aggregation_without_grouping_and_vector() {
        let p = read("(sum(rate(a_total{x=\"1\"}[5m])) or vector(0)) + increase(b[1h])").unwrap();
        let names: Vec<_> = p
            .selectors
            .iter()
            .filter_map(|s| s.metric.clone())
            .collect();
        assert_eq!(names, ["a_total", "b"]);
        assert_eq!(
            p.ranges,
            [
                ("5m".to_owned(), "rate".to_owned()),
                ("1h".to_owned(), "increase".to_owned())
            ]
        );
    }

    #[test]
    fn threshold_split() {
        let (signal, op, t) =
            split_threshold("sum by (a) (rate(x{b=\">\"}[5m]))\n/ sum(y)\n> 0.05").unwrap();
        assert_eq!(
            (signal.as_str(), op.as_str(), t),
            ("sum by (a) (rate(x{b=\">\"}[5m]))\n/ sum(y)", ">", 0.05)
        );
        assert!(split_threshold("a > 1 and b > 2").is_none());
    }

    #[test]
    fn alert_blocks() {
        let q = alert_queries(
            "a.yml",
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          x\n          > 1\n        for: 1m\n      - alert: B\n        expr: |\n          y == 0\n",
        )
        .unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].expr, "x\n> 1");
        assert_eq!(q[1].title, "B");
        assert!(alert_queries("a.yml", "- alert: C\n  expr: z > 1\n").is_err());
    }
}
