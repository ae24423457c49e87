//! The dashboards' lint: pure checks of the dashboard JSON and the alert rules against a real
//! scrape of sipsctpd (`dashboards/testdata/scrape.txt`, which the live VM test proves
//! current). Every finding is a line naming the file and the panel; none is a warning.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::Value;

use super::queries::{self, Kind, Query};

/// The `schemaVersion` of `@grafana/schema` (the pinned version, see `super::GRAFANA_SCHEMA`).
pub const SCHEMA_VERSION: u64 = 42;

/// Labels with a bounded set of values: the only ones a dashboard may select, group or name a
/// series by. Call-IDs, association ids, branches, addresses per message never are labels.
pub const BOUNDED_LABELS: &[&str] = &[
    "job",
    "instance",
    "le",
    "peer",
    "path",
    "kernel_retransmitted",
    "method",
    "status_class",
    "transport",
    "direction",
    "reason",
    "leg",
    "where",
    "outcome",
    "probe",
    "source",
    "event",
    "timer",
    "limit",
];

/// Metric names, each with its labels and the values seen, from a Prometheus text scrape.
#[derive(Debug, Default)]
pub struct Scrape {
    /// metric -> label -> values.
    pub metrics: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Scrape {
    /// Parses the exposition text (label values without escaped quotes, as sipsctpd's are).
    ///
    /// # Errors
    /// A sample line that does not parse.
    pub fn parse(text: &str) -> Result<Scrape, String> {
        let mut s = Scrape::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, _value) = line
                .rsplit_once(' ')
                .ok_or_else(|| format!("scrape line {}: no value: {line}", n + 1))?;
            let (name, labels) = match series.split_once('{') {
                None => (series, ""),
                Some((name, rest)) => (
                    name,
                    rest.strip_suffix('}')
                        .ok_or_else(|| format!("scrape line {}: labels: {line}", n + 1))?,
                ),
            };
            let entry = s.metrics.entry(name.to_owned()).or_default();
            for kv in labels.split("\",").filter(|kv| !kv.is_empty()) {
                let (k, v) = kv
                    .split_once("=\"")
                    .ok_or_else(|| format!("scrape line {}: label {kv}", n + 1))?;
                entry
                    .entry(k.to_owned())
                    .or_default()
                    .insert(v.trim_end_matches('"').to_owned());
            }
        }
        if s.metrics.is_empty() {
            return Err("the scrape holds no samples".into());
        }
        Ok(s)
    }

    /// The labels of `metric` (job and instance, which Prometheus adds, included).
    fn labels(&self, metric: &str) -> Option<BTreeSet<&str>> {
        let m = self.metrics.get(metric)?;
        let mut l: BTreeSet<&str> = m.keys().map(String::as_str).collect();
        l.insert("job");
        l.insert("instance");
        Some(l)
    }
}

/// Lints one dashboard; returns the findings (empty: clean).
pub fn dashboard(file: &str, d: &Value, scrape: &Scrape) -> Vec<String> {
    let mut f = Vec::new();
    let mut bad = |m: String| f.push(format!("{file}: {m}"));
    for key in ["uid", "title", "description"] {
        if d[key].as_str().is_none_or(str::is_empty) {
            bad(format!("no {key}"));
        }
    }
    if d["schemaVersion"].as_u64() != Some(SCHEMA_VERSION) {
        bad(format!(
            "schemaVersion {} (current Grafana: {SCHEMA_VERSION})",
            d["schemaVersion"]
        ));
    }
    // Variables: a Prometheus data source variable, job and instance.
    let vars: Vec<&Value> = d["templating"]["list"]
        .as_array()
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).copied();
    match var("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        _ => bad("no `datasource` variable of type datasource (prometheus)".into()),
    }
    for name in ["job", "instance"] {
        match var(name) {
            Some(v) if v["type"] == "query" && v["datasource"]["uid"] == "${datasource}" => {}
            _ => bad(format!("no `{name}` query variable on $datasource")),
        }
    }
    let var_names: HashSet<String> = vars
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect();
    // Panels: unique ids, grid, titles, descriptions, units, data source.
    let mut ids = HashSet::new();
    let mut boxes: Vec<(u64, [u64; 4])> = Vec::new();
    for p in queries::panels(d) {
        let id = p["id"].as_u64();
        let title = p["title"].as_str().unwrap_or_default();
        let who = format!(
            "panel {} \"{title}\"",
            id.map_or("?".into(), |i| i.to_string())
        );
        match id {
            None => bad(format!("{who}: no numeric id")),
            Some(i) if !ids.insert(i) => bad(format!("{who}: duplicate id {i}")),
            _ => {}
        }
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64(),
            g["y"].as_u64(),
            g["w"].as_u64(),
            g["h"].as_u64(),
        );
        match (x, y, w, h) {
            (Some(x), Some(y), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24 => {
                let r = [x, y, x + w, y + h];
                for (other, o) in &boxes {
                    if r[0] < o[2] && o[0] < r[2] && r[1] < o[3] && o[1] < r[3] {
                        bad(format!("{who}: overlaps panel {other}"));
                    }
                }
                boxes.push((id.unwrap_or(0), r));
            }
            _ => bad(format!(
                "{who}: gridPos {g} is not inside the 24-column grid"
            )),
        }
        if p["type"] == "row" {
            continue;
        }
        if title.is_empty() {
            bad(format!("{who}: no title"));
        }
        if p["description"].as_str().is_none_or(|s| s.len() < 20) {
            bad(format!("{who}: no description (at least a sentence)"));
        }
        if p["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            bad(format!("{who}: no unit (fieldConfig.defaults.unit)"));
        }
        if p["datasource"]["uid"] != "${datasource}" {
            bad(format!(
                "{who}: data source {} is not the templated ${{datasource}}",
                p["datasource"]
            ));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            bad(format!("{who}: no query"));
        }
        let mut refs = HashSet::new();
        for t in &targets {
            if t["datasource"]["uid"] != "${datasource}" {
                bad(format!(
                    "{who}: a query's data source is not ${{datasource}}"
                ));
            }
            if !refs.insert(t["refId"].as_str().unwrap_or_default()) {
                bad(format!("{who}: duplicate refId {}", t["refId"]));
            }
        }
        // Data links may name only labels the panel's queries keep.
        let produced: BTreeSet<String> = targets
            .iter()
            .filter_map(|t| t["expr"].as_str())
            .filter_map(|e| queries::read(e).ok())
            .flat_map(|r| r.grouping)
            .collect();
        let mut links: Vec<&Value> = p["fieldConfig"]["defaults"]["links"]
            .as_array()
            .map(|l| l.iter().collect())
            .unwrap_or_default();
        for o in p["fieldConfig"]["overrides"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for prop in o["properties"].as_array().into_iter().flatten() {
                if prop["id"] == "links" {
                    links.extend(prop["value"].as_array().into_iter().flatten());
                }
            }
        }
        for l in links {
            let url = l["url"].as_str().unwrap_or_default();
            for (prefix, kind) in [
                ("${__field.labels.", "label"),
                ("${__data.fields.", "field"),
            ] {
                for part in url.split(prefix).skip(1) {
                    let name = part.split(['}', ':']).next().unwrap_or_default();
                    if !produced.contains(name) {
                        bad(format!(
                            "{who}: link \"{}\" uses {kind} `{name}`, which no query keeps \
                             (by: {produced:?})",
                            l["title"].as_str().unwrap_or_default()
                        ));
                    }
                }
            }
            for v in url.split("${").skip(1) {
                let name = v.split(['}', ':']).next().unwrap_or_default();
                if !name.starts_with("__") && !var_names.contains(name) {
                    bad(format!("{who}: link uses ${{{name}}}, no such variable"));
                }
            }
        }
    }
    for q in queries::dashboard_queries(file, d) {
        for m in query(&q, scrape, &var_names) {
            f.push(format!("{}: {m}", q.name()));
        }
    }
    f
}

/// Lints the alert rules (same query checks, without template variables).
pub fn alerts(file: &str, text: &str, scrape: &Scrape) -> Vec<String> {
    match queries::alert_queries(file, text) {
        Err(e) => vec![e],
        Ok(qs) if qs.is_empty() => vec![format!("{file}: no alert")],
        Ok(qs) => qs
            .iter()
            .flat_map(|q| {
                let mut f = query(q, scrape, &HashSet::new());
                if queries::split_threshold(&q.expr).is_none() {
                    f.push("not one signal compared with one threshold at its top level".into());
                }
                f.into_iter().map(|m| format!("{}: {m}", q.name()))
            })
            .collect(),
    }
}

/// The checks of one expression: it reads; every metric exists in the scrape with every label
/// it selects (and an `=` value the scrape has); grouping and legend labels exist on its
/// metrics and are bounded; dashboards select `job` and `instance` by their variables; rates
/// use `$__rate_interval`; variables exist.
fn query(q: &Query, scrape: &Scrape, vars: &HashSet<String>) -> Vec<String> {
    let mut f = Vec::new();
    if q.expr.trim().is_empty() {
        return vec!["empty expression".into()];
    }
    let parsed = match queries::read(&q.expr) {
        Ok(p) => p,
        Err(e) => return vec![format!("does not read as PromQL: {e}: {}", q.expr)],
    };
    if parsed.selectors.is_empty() {
        f.push("selects no metric".into());
    }
    let dashboard = q.kind != Kind::Alert;
    let mut labels_here: BTreeSet<&str> = BTreeSet::new();
    for s in &parsed.selectors {
        let Some(metric) = &s.metric else {
            f.push("a selector without a metric name".into());
            continue;
        };
        let Some(known) = scrape.labels(metric) else {
            f.push(format!(
                "metric `{metric}` is not in the scrape of sipsctpd"
            ));
            continue;
        };
        labels_here.extend(known.iter().copied());
        for m in &s.matchers {
            if !known.contains(m.label.as_str()) {
                f.push(format!(
                    "`{metric}` has no label `{}` (it has {known:?})",
                    m.label
                ));
            } else if m.op == "="
                && !m.value.contains('$')
                && let Some(values) = scrape.metrics.get(metric).and_then(|l| l.get(&m.label))
                && !values.contains(&m.value)
            {
                f.push(format!(
                    "`{metric}{{{}=\"{}\"}}`: the scrape has {values:?}",
                    m.label, m.value
                ));
            }
            if !BOUNDED_LABELS.contains(&m.label.as_str()) {
                f.push(format!("label `{}` is not a bounded label", m.label));
            }
        }
        if dashboard && !matches!(q.kind, Kind::Variable { .. }) {
            for (label, var) in [("job", "$job"), ("instance", "$instance")] {
                if !s
                    .matchers
                    .iter()
                    .any(|m| m.label == label && m.op == "=~" && m.value == var)
                {
                    f.push(format!("`{metric}` is not filtered by {label}=~\"{var}\""));
                }
            }
        }
    }
    for g in &parsed.grouping {
        if !labels_here.contains(g.as_str()) {
            f.push(format!("grouping label `{g}` is on none of its metrics"));
        }
        if !BOUNDED_LABELS.contains(&g.as_str()) {
            f.push(format!("grouping label `{g}` is not a bounded label"));
        }
    }
    for part in q.legend.split("{{").skip(1) {
        let l = part.split("}}").next().unwrap_or_default().trim();
        let kept = if parsed.aggregates() {
            parsed.grouping.iter().any(|g| g == l)
        } else {
            labels_here.contains(l)
        };
        if !kept {
            f.push(format!("legend label `{l}` is not a label of the result"));
        }
    }
    if let Kind::Variable { label } = &q.kind
        && !labels_here.contains(label.as_str())
    {
        f.push(format!(
            "variable label `{label}` is on none of its metrics"
        ));
    }
    for (range, func) in &parsed.ranges {
        let ok = if !dashboard {
            true
        } else if func == "increase" {
            range == "$__rate_interval" || range == "$__range"
        } else {
            range == "$__rate_interval"
        };
        if !ok {
            f.push(format!(
                "{func}(...[{range}]): use [$__rate_interval] (or [$__range] in an increase)"
            ));
        }
    }
    if dashboard {
        for v in q.expr.split('$').skip(1) {
            let name: String = v
                .trim_start_matches('{')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.starts_with("__") && !vars.contains(&name) {
                f.push(format!("uses ${name}, no such variable"));
            }
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = "# TYPE a_total counter\na_total{peer=\"x\",reason=\"t3_rtx\"} 1\n\
                          b_seconds_bucket{le=\"0.1\"} 0\nc 1\n";

    fn board(expr: &str, legend: &str) -> Value {
        serde_json::json!({
            "uid": "u", "title": "t", "description": "d", "schemaVersion": SCHEMA_VERSION,
            "templating": {"list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {"name": "job", "type": "query", "datasource": {"uid": "${datasource}"}, "query": {"query": "label_values(c, job)"}},
                {"name": "instance", "type": "query", "datasource": {"uid": "${datasource}"}, "query": "label_values(c{job=~\"$job\"}, instance)"}
            ]},
            "panels": [
                {"id": 1, "type": "timeseries", "title": "A", "description": "a panel that shows a", "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8},
                 "datasource": {"uid": "${datasource}"}, "fieldConfig": {"defaults": {"unit": "ops"}},
                 "targets": [{"refId": "A", "datasource": {"uid": "${datasource}"}, "expr": expr, "legendFormat": legend}]},
                {"id": 2, "type": "stat", "title": "B", "description": "a panel that shows c", "gridPos": {"x": 12, "y": 0, "w": 12, "h": 8},
                 "datasource": {"uid": "${datasource}"}, "fieldConfig": {"defaults": {"unit": "short"}},
                 "targets": [{"refId": "A", "datasource": {"uid": "${datasource}"}, "expr": "sum(c{job=~\"$job\", instance=~\"$instance\"})"}]}
            ]
        })
    }

    fn lint(expr: &str, legend: &str) -> Vec<String> {
        let s = Scrape::parse(SCRAPE).unwrap();
        dashboard("t.json", &board(expr, legend), &s)
    }

    const GOOD: &str = "sum by (peer) (rate(a_total{job=~\"$job\", instance=~\"$instance\", reason=\"t3_rtx\"}[$__rate_interval]))";

    #[test]
    fn a_good_dashboard_is_clean() {
        assert_eq!(lint(GOOD, "{{peer}}"), Vec::<String>::new());
    }

    #[test]
    fn each_mistake_is_found() {
        for (expr, legend, want) in [
            (
                GOOD.replace("a_total", "a_totl"),
                "",
                "metric `a_totl` is not in the scrape",
            ),
            (
                GOOD.replace("reason=", "raeson="),
                "",
                "has no label `raeson`",
            ),
            (GOOD.replace("t3_rtx", "t3-rtx"), "", "the scrape has"),
            (
                GOOD.replace("by (peer)", "by (pear)"),
                "",
                "grouping label `pear`",
            ),
            (GOOD.to_owned(), "{{reason}}", "legend label `reason`"),
            (
                GOOD.replace("$__rate_interval", "5m"),
                "",
                "use [$__rate_interval]",
            ),
            (
                GOOD.replace("instance=~\"$instance\", ", ""),
                "",
                "not filtered by instance",
            ),
            (GOOD.replace("$job", "$jbo"), "", "no such variable"),
            (
                GOOD.replace("sum by (peer)", "sum by (call_id)"),
                "",
                "`call_id` is not a bounded label",
            ),
        ] {
            let f = lint(&expr, legend);
            assert!(
                f.iter().any(|l| l.contains(want)),
                "{expr} / {legend}: want {want:?}, got {f:?}"
            );
        }
    }

    #[test]
    fn layout_mistakes_are_found() {
        let s = Scrape::parse(SCRAPE).unwrap();
        let mut b = board(GOOD, "");
        b["panels"][1]["gridPos"]["x"] = 6.into();
        b["panels"][1]["id"] = 1.into();
        b["panels"][1]["fieldConfig"]["defaults"]["unit"] = "".into();
        b["panels"][1]["datasource"] = serde_json::json!({"uid": "prometheus"});
        let f = dashboard("t.json", &b, &s).join("\n");
        for want in ["overlaps", "duplicate id", "no unit", "not the templated"] {
            assert!(f.contains(want), "want {want}: {f}");
        }
    }

    #[test]
    fn alerts_are_checked_too() {
        let s = Scrape::parse(SCRAPE).unwrap();
        let text = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: |\n      sum(rate(a_total{call_id=\"1\"}[5m]))\n      > 1\n";
        let f = alerts("a.yml", text, &s).join("\n");
        assert!(
            f.contains("no label `call_id`") && f.contains("not a bounded label"),
            "{f}"
        );
    }
}
