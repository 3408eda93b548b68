//! The Dashboard, the admin's landing page: the health signals worth a look, what finished and
//! failed per minute over the last hour and per 15 minutes over the last day, and how long each
//! kind's jobs waited and ran (p50, p95, p99), all drawn on the server as SVG.
use maud::{Markup, html};

use super::chart::{Bar, Stamp, percentiles, stacked};
use super::components::thousands;
use super::layout::{PageCtx, page};
use crate::insight::{Dashboard, KindTimes, Point, Series, Signal, human_ms};

/// How often the panel reloads itself.
const REFRESH: &str = "every 5s";

pub fn dashboard_page(ctx: &PageCtx, d: &Dashboard) -> Markup {
    page(
        ctx,
        "Dashboard",
        None,
        html! {
            div class="page-head" { h1 { "Dashboard" } }
            (dashboard_panel(&ctx.base, d))
        },
    )
}

/// Everything below the title, also served alone to htmx, which reloads it every 5 s.
pub fn dashboard_panel(base: &str, d: &Dashboard) -> Markup {
    let hour = &d.series.last_hour;
    let day = &d.series.last_day;
    html! {
        div id="dashboard" class="dashboard" hx-get={ (base) "/dashboard" } hx-trigger=(REFRESH) hx-swap="outerHTML" {
            (health(base, &d.health))
            section class="card" aria-labelledby="chart-hour" {
                h2 id="chart-hour" { "Last hour" span class="muted small" { " · per minute" } }
                (summary(hour, "in the last hour"))
                (chart(hour, "minute", "a minute", false))
            }
            section class="card" aria-labelledby="chart-day" {
                h2 id="chart-day" { "Last 24 hours" span class="muted small" { " · per 15 minutes" } }
                (summary(day, "in the last 24 hours"))
                (chart(day, "15 minutes", "per 15 min", true))
            }
            section class="card per-kind" aria-labelledby="kinds" {
                h2 id="kinds" { "Wait and run time per kind" span class="muted small" { " · last 24 hours" } }
                (kinds_table(base, &d.series.kinds))
            }
        }
    }
}

/// The signals, or a line saying all is well.
fn health(base: &str, signals: &[Signal]) -> Markup {
    html! {
        section class="card health" aria-labelledby="health" {
            h2 id="health" { "Health" }
            @if signals.is_empty() {
                p class="all-clear" { "Nothing needs a look: every waiting job has a live node to run it, nothing runs far past its usual time, every node is heard from." }
            } @else {
                ul class="signals" {
                    @for s in signals {
                        li class={ "signal signal-" (s.signal.as_str()) } {
                            span class="signal-text" { (s.message) }
                            " "
                            a href={ (base) (s.link) } {
                                @if s.link == "/nodes" { "See the nodes" } @else { "See the jobs" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// "120 finished (3 failed, 2 cancelled), 4 retried …": the numbers the chart draws (a retried
/// attempt failed and its job runs again).
fn summary(s: &Series, span: &str) -> Markup {
    let t = s.total();
    html! {
        p class="chart-summary" {
            @if t.finished() == 0 && t.retried == 0 {
                span class="muted" { "No jobs finished " (span) "." }
            } @else {
                span class="num" { (thousands(t.finished() as u64)) } " finished"
                " (" span class="num" { (thousands(t.failed as u64)) } " failed"
                @if t.cancelled > 0 { ", " span class="num" { (thousands(t.cancelled as u64)) } " cancelled" }
                ")"
                @if t.retried > 0 { ", " span class="num" { (thousands(t.retried as u64)) } " retried" }
                " " (span) "."
            }
        }
    }
}

/// Stacked bars of one series, with a legend; `weekday`: its moments name their day.
fn chart(s: &Series, step: &str, unit: &str, weekday: bool) -> Markup {
    let t = s.total();
    let label = format!(
        "Jobs finished per {step}: {} done, {} failed, {} retried, {} cancelled in all",
        t.done, t.failed, t.retried, t.cancelled
    );
    let bars: Vec<Bar> = s
        .points
        .iter()
        .map(|p| Bar {
            parts: vec![
                (p.done, "done"),
                (p.cancelled, "cancelled"),
                (p.retried, "retried"),
                (p.failed, "failed"),
            ],
            at: Stamp { at: p.at, weekday },
            title: point_title(p),
        })
        .collect();
    html! {
        figure class="chart-box" {
            (stacked(&label, &bars, unit))
            figcaption class="legend small muted" {
                span class="key done" {} "done "
                span class="key failed" {} "failed "
                span class="key retried" {} "retried "
                span class="key cancelled" {} "cancelled"
            }
        }
    }
}

/// What a bar's tooltip says after its moment.
fn point_title(p: &Point) -> String {
    if p.finished() == 0 && p.retried == 0 {
        return ": none".to_owned();
    }
    format!(
        ": {} done, {} failed, {} retried, {} cancelled",
        p.done, p.failed, p.retried, p.cancelled
    )
}

/// Per kind: attempts, failures, and wait and run time percentiles, numbers beside pictures.
fn kinds_table(base: &str, kinds: &[KindTimes]) -> Markup {
    if kinds.is_empty() {
        return html! { p class="empty" { "No attempts finished in the last 24 hours." } };
    }
    html! {
        div class="table-wrap" {
            table class="kinds" {
                thead {
                    tr {
                        th scope="col" { "Kind" }
                        th scope="col" { "Attempts" }
                        th scope="col" { "Failed" }
                        th scope="col" { "Wait " span class="muted small" { "due → start, p50 / p95 / p99" } }
                        th scope="col" { "Run time " span class="muted small" { "p50 / p95 / p99" } }
                    }
                }
                tbody {
                    @for k in kinds {
                        tr {
                            td {
                                a href={ (base) "/workers?status=all&job=" (query_value(&k.kind)) } { (k.kind) }
                            }
                            td class="num" { (thousands(k.attempts.max(0) as u64)) }
                            td class="num" { (thousands(k.failed.max(0) as u64)) }
                            td { (times(&k.wait_ms)) (percentiles("Wait", &k.wait_ms)) }
                            td { (times(&k.run_ms)) (percentiles("Run time", &k.run_ms)) }
                        }
                    }
                }
            }
        }
    }
}

fn times(p: &crate::insight::Percentiles) -> Markup {
    let t = |v: Option<i64>| v.map(human_ms).unwrap_or_else(|| "—".into());
    html! { span class="num pct-text" { (t(p.p50)) " / " (t(p.p95)) " / " (t(p.p99)) } }
}

/// A kind name as a query value.
fn query_value(v: &str) -> String {
    serde_urlencoded::to_string([("v", v)])
        .map(|s| s[2..].to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insight::{Charts, Percentiles, SignalKind};

    fn dashboard(with_data: bool) -> Dashboard {
        let now = 1_700_000_000_000;
        let mut last_hour = Series::empty(now, 60, 60);
        let mut last_day = Series::empty(now, 900, 96);
        let mut kinds = vec![];
        if with_data {
            last_hour.add(now, 7, 2, 1, 0);
            last_day.add(now, 7, 2, 1, 0);
            kinds.push(KindTimes {
                kind: "Send <Newsletter>".into(),
                attempts: 10,
                failed: 3,
                wait_ms: Percentiles {
                    p50: Some(5),
                    p95: Some(40),
                    p99: Some(90),
                },
                run_ms: Percentiles {
                    p50: Some(1_200),
                    p95: Some(4_000),
                    p99: Some(9_000),
                },
                run_buckets: Default::default(),
            });
        }
        Dashboard {
            series: Charts {
                last_hour,
                last_day,
                kinds,
            },
            health: vec![],
        }
    }

    #[test]
    fn an_empty_dashboard_says_so_and_still_draws_its_charts() {
        let m = dashboard_panel("/admin", &dashboard(false)).into_string();
        assert!(m.contains("No jobs finished in the last hour."), "{m}");
        assert!(m.contains("No jobs finished in the last 24 hours."), "{m}");
        assert!(
            m.contains("No attempts finished in the last 24 hours."),
            "{m}"
        );
        assert!(m.contains("Nothing needs a look"), "{m}");
        assert_eq!(m.matches(r#"<svg class="chart""#).count(), 2, "{m}");
        assert!(m.contains(r#"hx-get="/admin/dashboard""#), "{m}");
    }

    #[test]
    fn a_full_dashboard_draws_bars_percentiles_and_signals() {
        let mut d = dashboard(true);
        d.health.push(Signal {
            signal: SignalKind::NoHandler,
            subject: "Ghost".into(),
            count: 2,
            oldest: None,
            message: "2 jobs of kind <Ghost> wait".into(),
            link: "/workers?status=all&job=Ghost".into(),
        });
        let m = dashboard_panel("", &d).into_string();
        assert!(
            m.contains(
                r#"<span class="num">9</span> finished (<span class="num">2</span> failed), <span class="num">1</span> retried in the last hour."#
            ),
            "{m}"
        );
        assert!(
            m.contains(r#"class="done""#) && m.contains(r#"class="failed""#),
            "{m}"
        );
        assert!(m.contains("Run time: p50 1 s, p95 4 s, p99 9 s"), "{m}");
        assert!(
            m.contains("Send &lt;Newsletter&gt;") && !m.contains("<Newsletter>"),
            "{m}"
        );
        assert!(
            m.contains("href=\"/workers?status=all&amp;job=Send+%3CNewsletter%3E\""),
            "{m}"
        );
        assert!(m.contains(r#"class="signal signal-no_handler""#), "{m}");
        assert!(m.contains("2 jobs of kind &lt;Ghost&gt; wait"), "{m}");
        assert!(
            m.contains(r#"<a href="/workers?status=all&amp;job=Ghost">See the jobs</a>"#),
            "{m}"
        );
    }
}
