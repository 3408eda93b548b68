//! Charts drawn on the server as SVG (no chart script in the browser): a sparkline of counts,
//! stacked bars of counts over time, and a duration's percentiles on a log scale. Each chart is
//! one image to assistive technology, labelled with what it says in words; colours come from
//! the stylesheet's variables, so both colour schemes read.
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use crate::insight::Percentiles;

/// A moment written on a chart: in UTC as served, rewritten by the page script in the zone the
/// operator chose (the header's UTC/local switch), as the pages' `<time>` elements are.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub at: DateTime<Utc>,
    /// With the weekday ("Mon 14:05"), or the clock alone ("14:05").
    pub weekday: bool,
}

impl Stamp {
    fn utc_text(&self) -> String {
        let format = if self.weekday { "%a %H:%M" } else { "%H:%M" };
        format!("{} UTC", self.at.format(format))
    }

    fn iso(&self) -> String {
        self.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    fn format(&self) -> &'static str {
        if self.weekday { "weekday-time" } else { "time" }
    }
}

/// Counts as a row of small bars (oldest first) with `label` as the image's name;
/// `bar_title(i, n)` names each bar (its tooltip).
pub fn spark(values: &[i64], label: &str, bar_title: impl Fn(usize, i64) -> String) -> Markup {
    const BAR: i64 = 6;
    const GAP: i64 = 2;
    const HEIGHT: i64 = 24;
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let width = (values.len() as i64 * (BAR + GAP) - GAP).max(BAR);
    html! {
        svg class="spark" role="img" aria-label=(label) width=(width) height=(HEIGHT)
            viewBox={ "0 0 " (width) " " (HEIGHT) } xmlns="http://www.w3.org/2000/svg" {
            title { (label) }
            @for (i, n) in values.iter().enumerate() {
                @let n = (*n).max(0);
                // A step with none keeps a 1-unit stub, so the row of steps stays legible.
                @let h = if n == 0 { 1 } else { (n * HEIGHT / max).max(2) };
                rect class=[(n == 0).then_some("zero")] x=(i as i64 * (BAR + GAP))
                    y=(HEIGHT - h) width=(BAR) height=(h) {
                    title { (bar_title(i, n)) }
                }
            }
        }
    }
}

/// One bar of a [`stacked`] chart: its parts bottom up, `(count, CSS class)`, and its tooltip:
/// the bar's moment, then `title` (": 3 done, …").
#[derive(Debug, Clone)]
pub struct Bar {
    pub parts: Vec<(i64, &'static str)>,
    pub at: Stamp,
    pub title: String,
}

/// Stacked bars over time, scaled to the tallest, with the scale's top (`{max} {unit}`) and the
/// span's ends written on it. `label` says in words what it shows (the image's name); the first
/// and last bars' moments label the ends of the time axis.
pub fn stacked(label: &str, bars: &[Bar], unit: &str) -> Markup {
    const W: f64 = 600.0;
    const TOP: f64 = 14.0;
    const PLOT: f64 = 110.0;
    const H: f64 = TOP + PLOT + 16.0;
    let total = |b: &Bar| b.parts.iter().map(|(n, _)| (*n).max(0)).sum::<i64>();
    let max = bars.iter().map(total).max().unwrap_or(0).max(1);
    let step = W / bars.len().max(1) as f64;
    let gap = (step * 0.2).min(2.0);
    let base = TOP + PLOT;
    html! {
        svg class="chart" role="img" aria-label=(label) viewBox={ "0 0 " (W) " " (H) }
            preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg" {
            title { (label) }
            line class="grid" x1="0" x2=(W) y1=(TOP) y2=(TOP) {}
            text class="axis" x="2" y=(TOP - 3.0) { (max) " " (unit) }
            @for (i, b) in bars.iter().enumerate() {
                @let x = i as f64 * step;
                // A full-height, see-through hit area carries the tooltip.
                g {
                    title data-at=(b.at.iso()) data-format=(b.at.format()) data-rest=(b.title) {
                        (b.at.utc_text()) (b.title)
                    }
                    rect class="hit" x=(fmt(x)) y=(TOP) width=(fmt(step)) height=(PLOT) {}
                    @for (class, y, h) in stack(&b.parts, base, PLOT / max as f64) {
                        rect class=(class) x=(fmt(x + gap / 2.0)) y=(fmt(y))
                            width=(fmt(step - gap)) height=(fmt(h)) {}
                    }
                }
            }
            line class="base" x1="0" x2=(W) y1=(base) y2=(base) {}
            @if let (Some(first), Some(last)) = (bars.first(), bars.last()) {
                text class="axis" x="2" y=(H - 3.0) data-at=(first.at.iso())
                    data-format=(first.at.format()) { (first.at.utc_text()) }
                text class="axis" x=(W - 2.0) y=(H - 3.0) text-anchor="end" data-at=(last.at.iso())
                    data-format=(last.at.format()) { (last.at.utc_text()) }
            }
        }
    }
}

/// The rectangles of one stacked bar, bottom up from `base`: `(class, top, height)` for each
/// part above zero (at least one unit high, so a small count stays visible).
fn stack(parts: &[(i64, &'static str)], base: f64, scale: f64) -> Vec<(&'static str, f64, f64)> {
    let mut y = base;
    let mut out = Vec::new();
    for (n, class) in parts {
        if *n > 0 {
            let h = (*n as f64 * scale).max(1.0);
            y -= h;
            out.push((*class, y, h));
        }
    }
    out
}

/// The shortest way to write a coordinate (one decimal at most).
fn fmt(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

/// The longest duration the percentile scale shows (1 h); longer ones sit at its end.
const SCALE_MAX_MS: f64 = 3_600_000.0;

/// Where `ms` sits on a log scale from 1 ms to 1 h, as a fraction of `width`.
fn log_x(ms: i64, width: f64) -> f64 {
    let v = (ms.max(1) as f64).log10() / SCALE_MAX_MS.log10();
    (v.clamp(0.0, 1.0) * width * 10.0).round() / 10.0
}

/// A duration's p50–p95 as a bar and its p99 as a tick, on a log scale from 1 ms to 1 h.
/// `what` names the duration ("wait", "run time") for the image's name.
pub fn percentiles(what: &str, p: &Percentiles) -> Markup {
    const W: f64 = 160.0;
    const H: f64 = 14.0;
    let Some(p50) = p.p50 else {
        return html! { span class="muted" { "—" } };
    };
    let p95 = p.p95.unwrap_or(p50);
    let p99 = p.p99.unwrap_or(p95);
    let label = format!(
        "{what}: p50 {}, p95 {}, p99 {}",
        crate::insight::human_ms(p50),
        crate::insight::human_ms(p95),
        crate::insight::human_ms(p99)
    );
    let (x50, x95, x99) = (log_x(p50, W), log_x(p95, W), log_x(p99, W));
    html! {
        svg class="pct-range" role="img" aria-label=(label) width=(W) height=(H)
            viewBox={ "0 0 " (W) " " (H) } xmlns="http://www.w3.org/2000/svg" {
            title { (label) }
            rect class="track" x="0" y="5" width=(W) height="4" rx="2" {}
            // Decades (10 ms, 1 s, 1 min) as faint ticks, so lengths compare across rows.
            @for ms in [10, 1_000, 60_000] {
                rect class="tick" x=(fmt(log_x(ms, W))) y="3" width="1" height="8" {}
            }
            rect class="range" x=(fmt(x50)) y="3" width=(fmt((x95 - x50).max(2.0))) height="8" rx="2" {}
            rect class="p99" x=(fmt((x99 - 1.0).max(0.0))) y="1" width="2" height="12" {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacked_bars_scale_to_the_tallest_and_name_themselves() {
        let at = |minute: u32| Stamp {
            at: chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 30, 10, minute, 0).unwrap(),
            weekday: false,
        };
        let bars = vec![
            Bar {
                parts: vec![(3, "done"), (1, "failed")],
                at: at(0),
                title: ": 3 done, 1 failed".into(),
            },
            Bar {
                parts: vec![(0, "done"), (0, "failed")],
                at: at(1),
                title: ": none".into(),
            },
        ];
        let m = stacked("4 finished <b>", &bars, "a minute").into_string();
        assert!(
            m.contains(r#"role="img" aria-label="4 finished &lt;b&gt;""#),
            "{m}"
        );
        // In UTC as served, with the moment for the page script to show in the operator's zone.
        assert!(
            m.contains(
                r#"<title data-at="2026-11-30T10:00:00.000Z" data-format="time" data-rest=": 3 done, 1 failed">10:00 UTC: 3 done, 1 failed</title>"#
            ),
            "{m}"
        );
        assert!(
            m.contains(r#"data-at="2026-11-30T10:01:00.000Z" data-format="time">10:01 UTC</text>"#),
            "the axis ends at the last bar: {m}"
        );
        // The tallest bar fills the plot: 3 of 4 done from the base up.
        assert!(
            m.contains(r#"class="done" x="1" y="41.5" width="298" height="82.5""#),
            "{m}"
        );
        assert!(
            m.contains(r#"class="failed" x="1" y="14" width="298" height="27.5""#),
            "{m}"
        );
        assert_eq!(
            m.matches(r#"class="done""#).count(),
            1,
            "an empty bar draws nothing"
        );
        // No data at all still draws the frame.
        let empty = stacked("nothing", &[], "a minute").into_string();
        assert!(
            empty.contains("<svg") && empty.contains("1 a minute"),
            "{empty}"
        );
    }

    #[test]
    fn percentiles_sit_on_a_log_scale() {
        assert_eq!(log_x(1, 160.0), 0.0);
        assert_eq!(log_x(3_600_000, 160.0), 160.0);
        assert_eq!(log_x(99_999_999, 160.0), 160.0);
        let p = Percentiles {
            p50: Some(1_000),
            p95: Some(2_000),
            p99: Some(60_000),
        };
        let m = percentiles("run time", &p).into_string();
        assert!(m.contains("run time: p50 1 s, p95 2 s, p99 1 min"), "{m}");
        assert_eq!(
            percentiles("wait", &Percentiles::default()).into_string(),
            r#"<span class="muted">—</span>"#
        );
    }
}
