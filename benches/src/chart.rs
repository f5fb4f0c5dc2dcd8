//! `flock-bench chart`: reads the `--json` results of several runs, groups them by server
//! (`label`) and mode, and writes a markdown table and an SVG bar chart of the medians, with
//! ratios to a baseline (by default the recvmmsg echo-server answering STUN).

use crate::cli::ChartArgs;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The measured phase of one run (the phase named like the mode; `register-setup` is skipped).
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub file: String,
    pub label: String,
    pub mode: String,
    /// Offered rate (`--rate`), `None` for closed loop.
    pub rate: Option<f64>,
    pub answered_per_s: f64,
    pub loss_pct: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: Option<f64>,
    pub gen_cpu_pct: f64,
    pub target_cpu_pct: Option<f64>,
    pub target_queue_bytes_mean: Option<f64>,
    pub target_drops: Option<f64>,
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut v = v;
    for k in path {
        v = v.get(k)?;
    }
    v.as_f64()
}

/// Parses one `--json` document; `file` names it in errors and in the result.
pub fn parse_run(text: &str, file: &str) -> Result<Run, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    let mode = doc
        .get("mode")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{file}: no \"mode\""))?
        .to_string();
    let label = doc
        .get("label")
        .and_then(Value::as_str)
        .or_else(|| doc.get("target").and_then(Value::as_str))
        .unwrap_or("?")
        .to_string();
    let phase = doc
        .get("phases")
        .and_then(Value::as_array)
        .and_then(|ps| {
            ps.iter()
                .find(|p| p.get("phase").and_then(Value::as_str) == Some(mode.as_str()))
        })
        .ok_or_else(|| format!("{file}: no phase \"{mode}\""))?;
    let need = |k: &[&str]| num(phase, k).ok_or_else(|| format!("{file}: no {}", k.join(".")));
    Ok(Run {
        file: file.to_string(),
        label,
        rate: num(&doc, &["rate"]),
        answered_per_s: need(&["answered_per_s"])?,
        loss_pct: need(&["loss_pct"])?,
        p50_us: need(&["latency", "p50_us"])?,
        p99_us: need(&["latency", "p99_us"])?,
        p999_us: num(phase, &["latency", "p999_us"]),
        gen_cpu_pct: need(&["gen_cpu_pct"])?,
        target_cpu_pct: num(phase, &["target_cpu_pct"]),
        target_queue_bytes_mean: num(phase, &["target_queue_bytes_mean"]),
        target_drops: num(phase, &["target_drops"]),
        mode,
    })
}

/// Reads the runs of every input: a file, or every `*.json` of a directory (sorted by name).
pub fn load(inputs: &[PathBuf]) -> Result<Vec<Run>, String> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut in_dir: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|e| format!("{}: {e}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
                .collect();
            in_dir.sort();
            files.extend(in_dir);
        } else {
            files.push(input.clone());
        }
    }
    let mut runs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        runs.push(parse_run(&text, &f.display().to_string())?);
    }
    if runs.is_empty() {
        return Err("no JSON results in the inputs".into());
    }
    Ok(runs)
}

/// Runs of one server (label), mode and offered rate: the rounds of one bar.
#[derive(Clone, Debug)]
pub struct Group {
    pub label: String,
    pub mode: String,
    pub rate: Option<f64>,
    pub runs: Vec<Run>,
}

/// Median (mean of the middle two for an even count); 0 when empty.
pub fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

impl Group {
    fn values(&self, f: impl Fn(&Run) -> f64) -> Vec<f64> {
        self.runs.iter().map(f).collect()
    }

    fn median_of(&self, f: impl Fn(&Run) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.runs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(v))
    }

    pub fn answered(&self) -> Vec<f64> {
        self.values(|r| r.answered_per_s)
    }

    pub fn median_answered(&self) -> f64 {
        median(self.answered())
    }

    /// "flockd keepalive", with the offered rate when there was one.
    pub fn name(&self) -> String {
        match self.rate {
            Some(r) => format!("{} {} @{}", self.label, self.mode, si(r)),
            None => format!("{} {}", self.label, self.mode),
        }
    }
}

/// Groups runs by (label, mode, rate): labels in the order they first appear, within a label
/// stun/echo before keepalive before register, closed loop before a fixed rate.
pub fn group(runs: &[Run]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for r in runs {
        match groups
            .iter_mut()
            .find(|g| g.label == r.label && g.mode == r.mode && g.rate == r.rate)
        {
            Some(g) => g.runs.push(r.clone()),
            None => groups.push(Group {
                label: r.label.clone(),
                mode: r.mode.clone(),
                rate: r.rate,
                runs: vec![r.clone()],
            }),
        }
    }
    let labels: Vec<String> = groups.iter().map(|g| g.label.clone()).collect();
    let rank = |g: &Group| {
        let mode = ["stun", "echo", "keepalive", "register"]
            .iter()
            .position(|m| *m == g.mode)
            .unwrap_or(4);
        let label = labels.iter().position(|l| *l == g.label).unwrap_or(0);
        (label, mode, g.rate.is_some())
    };
    groups.sort_by_key(rank);
    groups
}

/// Median answered/s of the closed-loop `stun` (else `echo`) runs labelled `label`.
pub fn baseline(groups: &[Group], label: &str) -> Option<f64> {
    ["stun", "echo"].iter().find_map(|m| {
        groups
            .iter()
            .find(|g| g.label == label && g.mode == *m && g.rate.is_none())
            .map(Group::median_answered)
    })
}

/// 1234567 -> "1.23M", 45600 -> "45.6k".
pub fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// The markdown table: one row per group, medians over its rounds (loss: the worst round,
/// drops: the sum).
pub fn table(groups: &[Group], baselines: &[String]) -> String {
    let bases: Vec<(String, Option<f64>)> = baselines
        .iter()
        .map(|b| (b.clone(), baseline(groups, b)))
        .collect();
    let mut s = String::new();
    s.push_str("| server | mode | offered | answered/s (median) |");
    for (b, _) in &bases {
        let _ = write!(s, " vs {b} |");
    }
    s.push_str(
        " min–max | loss % (worst) | p50 µs | p99 µs | p99.9 µs | gen CPU % | server CPU % | server rx queue KiB | kernel drops | rounds |\n|---|---|---:|---:|",
    );
    for _ in &bases {
        s.push_str("---:|");
    }
    s.push_str("---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let opt = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map_or("-".to_string(), f);
    for g in groups {
        let med = g.median_answered();
        let a = g.answered();
        let lo = a.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = a.iter().copied().fold(0.0, f64::max);
        let _ = write!(
            s,
            "| {} | {} | {} | {:.0} |",
            g.label,
            g.mode,
            g.rate.map_or("max".to_string(), |r| format!("{r:.0}/s")),
            med
        );
        for (_, b) in &bases {
            let _ = write!(s, " {} |", opt(*b, &|b| format!("{:.2}", med / b)));
        }
        let drops: Vec<f64> = g.runs.iter().filter_map(|r| r.target_drops).collect();
        let _ = writeln!(
            s,
            " {} – {} | {:.2} | {:.0} | {:.0} | {} | {:.0} | {} | {} | {} | {} |",
            si(lo),
            si(hi),
            g.runs.iter().map(|r| r.loss_pct).fold(0.0, f64::max),
            median(g.values(|r| r.p50_us)),
            median(g.values(|r| r.p99_us)),
            opt(g.median_of(|r| r.p999_us), &|x| format!("{x:.0}")),
            median(g.values(|r| r.gen_cpu_pct)),
            opt(g.median_of(|r| r.target_cpu_pct), &|x| format!("{x:.0}")),
            opt(g.median_of(|r| r.target_queue_bytes_mean), &|x| format!(
                "{:.0}",
                x / 1024.0
            )),
            if drops.is_empty() {
                "-".to_string()
            } else {
                format!("{:.0}", drops.iter().sum::<f64>())
            },
            a.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    s
}

/// Draws the bar chart into `out` (SVG): per group the median as a bar, every round as a dot,
/// a min–max whisker, and the ratio to `base` (label) above the bar.
pub fn draw(groups: &[Group], base: Option<&str>, title: &str, out: &Path) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| format!("{}: {e}", out.display());
    let n = groups.len();
    let base_rate = base.and_then(|b| baseline(groups, b));
    let top = groups.iter().flat_map(Group::answered).fold(1.0, f64::max) * 1.18;
    let names: Vec<String> = groups.iter().map(Group::name).collect();
    let width = (160 * n as u32 + 160).max(640);
    let root = SVGBackend::new(out, (width, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d((0..n.saturating_sub(1)).into_segmented(), 0.0..top)
        .map_err(|x| e(&x))?;
    let label_of = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let y_fmt = |y: &f64| si(*y);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(n.max(1))
        .x_label_formatter(&label_of)
        .y_label_formatter(&y_fmt)
        .y_desc("answered/s")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|x| e(&x))?;

    let palette = [
        RGBColor(0x4c, 0x72, 0xb0),
        RGBColor(0x55, 0xa8, 0x68),
        RGBColor(0xc4, 0x4e, 0x52),
        RGBColor(0x81, 0x72, 0xb2),
        RGBColor(0xcc, 0xb9, 0x74),
        RGBColor(0x64, 0xb5, 0xcd),
    ];
    let mut labels: Vec<&str> = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let ci = labels
            .iter()
            .position(|l| *l == g.label)
            .unwrap_or_else(|| {
                labels.push(&g.label);
                labels.len() - 1
            });
        let color = palette[ci % palette.len()];
        let med = g.median_answered();
        let a = g.answered();
        let lo = a.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = a.iter().copied().fold(0.0, f64::max);
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), med),
            ],
            color.mix(0.75).filled(),
        );
        bar.set_margin(0, 0, 22, 22);
        chart.draw_series(std::iter::once(bar)).map_err(|x| e(&x))?;
        let ink = BLACK.stroke_width(2);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![
                    (SegmentValue::CenterOf(i), lo),
                    (SegmentValue::CenterOf(i), hi),
                ],
                ink,
            )))
            .map_err(|x| e(&x))?;
        for y in [lo, hi] {
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((SegmentValue::CenterOf(i), y))
                        + PathElement::new(vec![(-10, 0), (10, 0)], ink),
                ))
                .map_err(|x| e(&x))?;
        }
        chart
            .draw_series(
                a.iter()
                    .map(|&y| Circle::new((SegmentValue::CenterOf(i), y), 3, BLACK.filled())),
            )
            .map_err(|x| e(&x))?;
        let text = match base_rate {
            Some(b) if b > 0.0 => format!("{} ({:.2}×)", si(med), med / b),
            _ => si(med),
        };
        let style = TextStyle::from(("sans-serif", 14).into_font())
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((SegmentValue::CenterOf(i), hi)) + Text::new(text, (0, -6), style),
            ))
            .map_err(|x| e(&x))?;
    }
    if let Some(b) = base.filter(|_| base_rate.is_some()) {
        let note = format!(
            "bar: median of the rounds, dots: rounds, whisker: min–max; (×): ratio to {b} stun"
        );
        root.draw(&Text::new(
            note,
            (90, 540),
            ("sans-serif", 12)
                .into_font()
                .color(&RGBColor(0x55, 0x55, 0x55)),
        ))
        .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// `flock-bench chart`.
pub fn run(a: &ChartArgs) -> Result<(), String> {
    let runs = load(&a.input)?;
    let groups = group(&runs);
    let t = table(&groups, &a.baseline);
    print!("{t}");
    if let Some(p) = &a.table {
        std::fs::write(p, &t).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if let Some(p) = &a.output {
        draw(&groups, a.baseline.first().map(String::as_str), &a.title, p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(label: &str, mode: &str, rate: Option<f64>, answered: f64) -> String {
        let rate = rate.map_or("null".to_string(), |r| r.to_string());
        format!(
            r#"{{"label": "{label}", "mode": "{mode}", "target": "127.0.0.1:1", "rate": {rate},
            "phases": [
              {{"phase": "register-setup", "answered_per_s": 1.0, "loss_pct": 0.0,
                "latency": {{"p50_us": 1.0, "p99_us": 2.0}}, "gen_cpu_pct": 1.0}},
              {{"phase": "{mode}", "answered_per_s": {answered}, "loss_pct": 0.5,
                "latency": {{"p50_us": 40.0, "p99_us": 90.0, "p999_us": 100.0, "max_us": 200.0}},
                "gen_cpu_pct": 60.0, "target_cpu_pct": 99.5, "target_queue_bytes_mean": 20480,
                "target_queue_bytes_max": 40960, "target_drops": 0, "cpu_busy_pct": [80.0, 100.0]}}
            ]}}"#
        )
    }

    fn runs() -> Vec<Run> {
        [
            ("echo-server mmsg", "stun", None, 1_000_000.0),
            ("echo-server mmsg", "stun", None, 1_200_000.0),
            ("echo-server mmsg", "stun", None, 900_000.0),
            ("flockd", "keepalive", None, 800_000.0),
            ("flockd", "keepalive", None, 700_000.0),
            ("flockd", "keepalive", Some(350_000.0), 349_000.0),
        ]
        .iter()
        .enumerate()
        .map(|(i, &(l, m, r, a))| parse_run(&fixture(l, m, r, a), &format!("f{i}.json")).unwrap())
        .collect()
    }

    #[test]
    fn parses_the_measured_phase() {
        let r = &runs()[3];
        assert_eq!((r.label.as_str(), r.mode.as_str()), ("flockd", "keepalive"));
        assert_eq!(
            (r.answered_per_s, r.p99_us, r.rate),
            (800_000.0, 90.0, None)
        );
        assert_eq!(r.target_queue_bytes_mean, Some(20480.0));
        assert!(parse_run(r#"{"mode": "stun", "phases": []}"#, "x").is_err());
        assert!(parse_run("not json", "x").is_err());
    }

    #[test]
    fn medians_groups_and_table() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0]), 2.5);
        let g = group(&runs());
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].median_answered(), 1_000_000.0);
        assert_eq!(g[1].median_answered(), 750_000.0);
        assert_eq!(g[2].name(), "flockd keepalive @350.0k");
        assert_eq!(baseline(&g, "echo-server mmsg"), Some(1_000_000.0));
        assert_eq!(baseline(&g, "nobody"), None);
        let t = table(&g, &["echo-server mmsg".to_string(), "nobody".to_string()]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(lines[0].contains("vs echo-server mmsg"));
        assert!(
            lines[3].starts_with("| flockd | keepalive | max | 750000 | 0.75 | - | 700.0k – 800.0k | 0.50 | 40 | 90 | 100 | 60 | 100 | 20 | 0 | 800000 700000 |"),
            "{}",
            lines[3]
        );
        assert!(lines[4].contains("| 350000/s | 349000 | 0.35 |"));
    }

    #[test]
    fn draws_svg() {
        let dir = std::env::temp_dir().join(format!("flock-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (i, r) in [("a", 1e6), ("b", 5e5)].iter().enumerate() {
            std::fs::write(
                dir.join(format!("{i}.json")),
                fixture(r.0, "stun", None, r.1),
            )
            .unwrap();
        }
        std::fs::write(dir.join("ignored.txt"), "x").unwrap();
        let runs = load(std::slice::from_ref(&dir)).unwrap();
        assert_eq!(runs.len(), 2);
        let out = dir.join("chart.svg");
        draw(&group(&runs[..1]), Some("a"), "one bar", &out).unwrap();
        draw(&group(&runs), Some("a"), "test", &out).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.contains("0.50×"), "ratio on the bar");
        assert!(svg.contains("a stun") && svg.contains("b stun"));
    }
}
