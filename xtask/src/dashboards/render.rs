//! PNG previews of the dashboards, drawn with plotters from the panel data the live VM test
//! wrote (`results/<uid>.json`: every target's series as Prometheus returned them). The layout
//! is the dashboard's own grid (24 columns, `gridPos` units), with each panel's title and unit;
//! time series are drawn as lines, stats as their last value coloured by the thresholds,
//! tables as the merged instant results. A panel without data says "No data", as Grafana does.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context as _, Result, anyhow};
use plotters::{
    prelude::*,
    style::{FontStyle, register_font},
};
use serde_json::Value;

/// Pixels per grid column (24 columns) and per grid row unit.
const COL: u32 = 60;
const ROW: u32 = 32;
const HEADER: u32 = 56;
const PAD: u32 = 4;

const BG: RGBColor = RGBColor(17, 18, 23);
const PANEL: RGBColor = RGBColor(24, 27, 31);
const BORDER: RGBColor = RGBColor(44, 50, 57);
const TEXT: RGBColor = RGBColor(204, 204, 220);
const DIM: RGBColor = RGBColor(140, 140, 155);
/// Grafana's classic palette.
const PALETTE: [RGBColor; 10] = [
    RGBColor(115, 191, 105),
    RGBColor(242, 204, 12),
    RGBColor(87, 148, 242),
    RGBColor(255, 120, 10),
    RGBColor(242, 73, 92),
    RGBColor(184, 119, 217),
    RGBColor(255, 152, 48),
    RGBColor(138, 184, 255),
    RGBColor(255, 179, 87),
    RGBColor(31, 120, 193),
];

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FONT_BOLD: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";

pub(crate) fn fonts() -> Result<()> {
    for (path, style) in [(FONT, FontStyle::Normal), (FONT_BOLD, FontStyle::Bold)] {
        let bytes = std::fs::read(path).with_context(|| {
            format!("reading {path} (Debian fonts-dejavu-core; setup installs it)")
        })?;
        register_font("sans-serif", style, Box::leak(bytes.into_boxed_slice()))
            .map_err(|_| anyhow!("{path} is not a font plotters can use"))?;
    }
    Ok(())
}

/// One series of a target: its legend name and points `(unix seconds, value)`.
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    points: Vec<(f64, Option<f64>)>,
}

/// Every target's series of a panel, by refId.
fn panel_data(data: &Value, id: u64) -> Vec<(String, Vec<Series>)> {
    data["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["panel"].as_u64() == Some(id))
        .map(|t| {
            let series = t["series"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| Series {
                    name: s["name"].as_str().unwrap_or_default().to_owned(),
                    labels: s["labels"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| {
                                    (k.clone(), v.as_str().unwrap_or_default().to_owned())
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    points: s["points"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| (p[0].as_f64().unwrap_or_default(), p[1].as_f64()))
                        .collect(),
                })
                .collect();
            (t["ref"].as_str().unwrap_or_default().to_owned(), series)
        })
        .collect()
}

/// A value in a Grafana unit.
fn format(v: f64, unit: &str) -> String {
    let num = |x: f64| {
        let a = x.abs();
        if a == 0.0 {
            "0".to_owned()
        } else if x.fract() == 0.0 && a < 1e3 {
            format!("{x:.0}")
        } else if a >= 1e6 {
            format!("{:.2} M", x / 1e6)
        } else if a >= 1e3 {
            format!("{:.2} K", x / 1e3)
        } else if a >= 100.0 {
            format!("{x:.0}")
        } else if a >= 10.0 {
            format!("{x:.1}")
        } else {
            format!("{x:.2}")
        }
    };
    match unit {
        "percentunit" => format!("{}%", num(v * 100.0)),
        "s" if v.abs() < 1.0 && v != 0.0 => format!("{} ms", num(v * 1000.0)),
        "s" => format!("{} s", num(v)),
        "reqps" => format!("{} req/s", num(v)),
        "ops" => format!("{} ops/s", num(v)),
        _ => num(v),
    }
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type DrawErr =
    DrawingAreaErrorKind<<BitMapBackend<'static> as plotters::backend::DrawingBackend>::ErrorType>;

/// Renders `dashboard` with the live `data` into `png`.
///
/// # Errors
/// Fonts missing, or drawing or writing the PNG failed.
pub fn dashboard(dashboard: &Value, data: &Value, png: &Path) -> Result<()> {
    fonts()?;
    let panels = super::queries::panels(dashboard);
    let rows = panels
        .iter()
        .map(|p| p["gridPos"]["y"].as_u64().unwrap_or(0) + p["gridPos"]["h"].as_u64().unwrap_or(0))
        .max()
        .unwrap_or(1) as u32;
    let (w, h) = (24 * COL, HEADER + rows * ROW + PAD);
    let root = BitMapBackend::new(png, (w, h)).into_drawing_area();
    let e = |e: DrawErr| anyhow!("drawing {}: {e:?}", png.display());
    root.fill(&BG).map_err(e)?;
    let title = format!(
        "{}   (live run: {} calls, 10 % loss upstream, kernel {}, {} packets dropped by netem)",
        dashboard["title"].as_str().unwrap_or_default(),
        data["calls"],
        data["kernel"].as_str().unwrap_or("?"),
        data["netem_dropped"]
    );
    root.draw(&Text::new(
        title,
        (12, 16),
        ("sans-serif", 20).into_font().color(&TEXT),
    ))
    .map_err(e)?;
    for p in panels {
        let g = &p["gridPos"];
        let at = |k: &str| g[k].as_u64().unwrap_or(0) as u32;
        let (x, y, pw, ph) = (
            at("x") * COL,
            HEADER + at("y") * ROW,
            at("w") * COL,
            at("h") * ROW,
        );
        let area = root
            .clone()
            .shrink((x + PAD, y + PAD), (pw - 2 * PAD, ph - 2 * PAD));
        let title = p["title"].as_str().unwrap_or_default();
        if p["type"] == "row" {
            area.draw(&Text::new(
                title.to_owned(),
                (4, 4),
                ("sans-serif", 18)
                    .into_font()
                    .style(FontStyle::Bold)
                    .color(&TEXT),
            ))
            .map_err(e)?;
            continue;
        }
        area.fill(&PANEL).map_err(e)?;
        let (aw, ah) = area.dim_in_pixel();
        area.draw(&Rectangle::new(
            [(0, 0), (aw as i32 - 1, ah as i32 - 1)],
            BORDER,
        ))
        .map_err(e)?;
        area.draw(&Text::new(
            title.to_owned(),
            (8, 6),
            ("sans-serif", 15)
                .into_font()
                .style(FontStyle::Bold)
                .color(&TEXT),
        ))
        .map_err(e)?;
        let body = area
            .clone()
            .shrink((6, 26), (aw - 12, ah.saturating_sub(32)));
        let unit = p["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .unwrap_or("short");
        let id = p["id"].as_u64().unwrap_or(0);
        let targets = panel_data(data, id);
        let empty = targets
            .iter()
            .all(|(_, s)| s.iter().all(|s| s.points.iter().all(|p| p.1.is_none())));
        if empty {
            let (bw, bh) = body.dim_in_pixel();
            body.draw(&Text::new(
                "No data",
                (bw as i32 / 2 - 30, bh as i32 / 2 - 8),
                ("sans-serif", 16).into_font().color(&DIM),
            ))
            .map_err(e)?;
            continue;
        }
        match p["type"].as_str().unwrap_or_default() {
            "stat" => stat(&body, p, &targets, unit).map_err(e)?,
            "table" => table(&body, p, &targets, unit).map_err(e)?,
            _ => {
                let span = (
                    data["start"].as_f64().unwrap_or_default(),
                    data["end"].as_f64().unwrap_or_default(),
                );
                timeseries(&body, &targets, unit, span).map_err(e)?;
            }
        }
    }
    root.present().map_err(e)?;
    Ok(())
}

fn stat(
    area: &Area<'_>,
    p: &Value,
    targets: &[(String, Vec<Series>)],
    unit: &str,
) -> Result<(), DrawErr> {
    let steps: Vec<(Option<f64>, RGBColor)> = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let c = match s["color"].as_str().unwrap_or_default() {
                "red" => RGBColor(242, 73, 92),
                "orange" => RGBColor(255, 152, 48),
                _ => RGBColor(115, 191, 105),
            };
            (s["value"].as_f64(), c)
        })
        .collect();
    let color = |v: f64| {
        steps
            .iter()
            .rev()
            .find(|(t, _)| t.is_none_or(|t| v >= t))
            .map_or(PALETTE[0], |(_, c)| *c)
    };
    let name_mode = p["options"]["textMode"] == "name";
    let items: Vec<(String, Option<f64>)> = targets
        .iter()
        .flat_map(|(_, s)| s.iter())
        .map(|s| {
            let v = s.points.iter().rev().find_map(|p| p.1);
            // `decimals: 0` (counts over the range, which increase() extrapolates)
            let v = if p["fieldConfig"]["defaults"]["decimals"] == 0 {
                v.map(f64::round)
            } else {
                v
            };
            (s.name.clone(), v)
        })
        .collect();
    let (w, h) = area.dim_in_pixel();
    let n = items.len().max(1) as i32;
    for (i, (name, v)) in items.iter().enumerate() {
        let text = match (name_mode, v) {
            (true, _) => name.clone(),
            (false, Some(v)) if items.len() > 1 => format!("{name}: {}", format(*v, unit)),
            (false, Some(v)) => format(*v, unit),
            (false, None) => "No data".into(),
        };
        let c = if name_mode {
            PALETTE[2]
        } else {
            v.map_or(DIM, color)
        };
        // As large as fits: the height shared by the items, the width by the characters.
        let chars = text.chars().count().max(1) as i32;
        let size = (h as i32 / (n + 1))
            .min(w as i32 * 16 / (chars * 10))
            .clamp(12, 44);
        let y = (h as i32 - n * size) / 2 + i as i32 * size;
        let x = (w as i32 - (text.len() as i32 * size * 5 / 9)) / 2;
        area.draw(&Text::new(
            text,
            (x.max(4), y),
            ("sans-serif", size)
                .into_font()
                .style(FontStyle::Bold)
                .color(&c),
        ))?;
    }
    Ok(())
}

fn timeseries(
    area: &Area<'_>,
    targets: &[(String, Vec<Series>)],
    unit: &str,
    (t0, t1): (f64, f64),
) -> Result<(), DrawErr> {
    let all: Vec<&Series> = targets.iter().flat_map(|(_, s)| s.iter()).collect();
    let mut top = 0.0f64;
    for s in &all {
        for (_, v) in &s.points {
            if let Some(v) = v {
                top = top.max(*v);
            }
        }
    }
    if top <= 0.0 {
        top = 1.0;
    }
    let (_, h) = area.dim_in_pixel();
    let legend_rows = all.len().div_ceil(3).min(4) as u32;
    let legend_h = legend_rows * 15 + 4;
    let (plot, legend) = area.split_vertically(h.saturating_sub(legend_h));
    let mut chart = ChartBuilder::on(&plot)
        .margin(4)
        .x_label_area_size(18)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..(t1 - t0).max(1.0), 0.0..top * 1.1)?;
    let small = ("sans-serif", 11).into_font().color(&DIM);
    chart
        .configure_mesh()
        .axis_style(BORDER)
        .bold_line_style(BORDER.mix(0.6))
        .light_line_style(BORDER.mix(0.0))
        .x_labels(6)
        .y_labels(5)
        .x_label_style(small.clone())
        .y_label_style(small.clone())
        .x_label_formatter(&|s| format!("+{s:.0}s"))
        .y_label_formatter(&|v| format(*v, unit))
        .draw()?;
    for (i, s) in all.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        // Gaps (no value) split the line, as Grafana draws them.
        let mut seg = Vec::new();
        for (t, v) in &s.points {
            match v {
                Some(v) => seg.push((t - t0, *v)),
                None if !seg.is_empty() => {
                    chart.draw_series(LineSeries::new(
                        std::mem::take(&mut seg),
                        c.stroke_width(2),
                    ))?;
                }
                None => {}
            }
        }
        if !seg.is_empty() {
            chart.draw_series(LineSeries::new(seg, c.stroke_width(2)))?;
        }
    }
    let (lw, _) = legend.dim_in_pixel();
    let col_w = lw as i32 / 3;
    for (i, s) in all.iter().enumerate().take(12) {
        let (cx, cy) = ((i as i32 % 3) * col_w + 8, (i as i32 / 3) * 15 + 2);
        let c = PALETTE[i % PALETTE.len()];
        legend.draw(&Rectangle::new(
            [(cx, cy + 4), (cx + 12, cy + 8)],
            c.filled(),
        ))?;
        let mut name = if s.name.is_empty() {
            "value".to_owned()
        } else {
            s.name.clone()
        };
        if name.len() > 44 {
            name.truncate(43);
            name.push('…');
        }
        legend.draw(&Text::new(
            name,
            (cx + 16, cy),
            ("sans-serif", 11).into_font().color(&TEXT),
        ))?;
    }
    Ok(())
}

fn table(
    area: &Area<'_>,
    p: &Value,
    targets: &[(String, Vec<Series>)],
    unit: &str,
) -> Result<(), DrawErr> {
    // Grafana's "merge": one row per label set, one value column per target.
    let renames = &p["transformations"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == "organize"))
        .map(|t| t["options"]["renameByName"].clone())
        .unwrap_or(Value::Null);
    let mut label_cols: Vec<String> = Vec::new();
    for (_, ss) in targets {
        for s in ss {
            for k in s.labels.keys() {
                if !label_cols.contains(k) && k != "__name__" {
                    label_cols.push(k.clone());
                }
            }
        }
    }
    let value_cols: Vec<String> = targets
        .iter()
        .map(|(r, _)| {
            let key = if targets.len() == 1 {
                "Value".to_owned()
            } else {
                format!("Value #{r}")
            };
            renames[&key].as_str().map_or(key, str::to_owned)
        })
        .collect();
    let mut rows: BTreeMap<Vec<String>, Vec<Option<f64>>> = BTreeMap::new();
    for (i, (_, ss)) in targets.iter().enumerate() {
        for s in ss {
            let key: Vec<String> = label_cols
                .iter()
                .map(|k| s.labels.get(k).cloned().unwrap_or_default())
                .collect();
            let row = rows.entry(key).or_insert_with(|| vec![None; targets.len()]);
            row[i] = s.points.iter().rev().find_map(|p| p.1);
        }
    }
    let overrides: BTreeMap<String, String> = p["fieldConfig"]["overrides"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| {
            let name = o["matcher"]["options"].as_str()?;
            let unit = o["properties"]
                .as_array()?
                .iter()
                .find(|p| p["id"] == "unit")?["value"]
                .as_str()?;
            Some((name.to_owned(), unit.to_owned()))
        })
        .collect();
    let (w, _) = area.dim_in_pixel();
    let cols = label_cols.len() + value_cols.len();
    let cw = w as i32 / cols.max(1) as i32;
    let head = ("sans-serif", 13)
        .into_font()
        .style(FontStyle::Bold)
        .color(&DIM);
    for (i, c) in label_cols.iter().chain(value_cols.iter()).enumerate() {
        area.draw(&Text::new(c.clone(), (i as i32 * cw + 6, 2), head.clone()))?;
    }
    let (_, th) = area.dim_in_pixel();
    let fit = (th.saturating_sub(24) / 19) as usize;
    for (r, (labels, values)) in rows.iter().enumerate().take(fit) {
        let y = 22 + r as i32 * 19;
        let cell = ("sans-serif", 13).into_font().color(&TEXT);
        for (i, l) in labels.iter().enumerate() {
            area.draw(&Text::new(l.clone(), (i as i32 * cw + 6, y), cell.clone()))?;
        }
        for (j, v) in values.iter().enumerate() {
            let u = overrides.get(&value_cols[j]).map_or(unit, String::as_str);
            let text = v.map_or("-".to_owned(), |v| format(v, u));
            let x = (label_cols.len() + j) as i32 * cw + 6;
            area.draw(&Text::new(text, (x, y), cell.clone()))?;
        }
    }
    Ok(())
}
