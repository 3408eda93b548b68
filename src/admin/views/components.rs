//! Small pieces shared by the views: status badges, times, counts, progress bars.
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use crate::state::JobStatus;
use crate::store::COUNT_CAP;

/// A coloured badge naming the state.
pub fn status_badge(status: JobStatus) -> Markup {
    html! { span class={ "badge badge-" (status.as_str()) } { (status.as_str()) } }
}

/// A time in UTC; the page's script shows it in the operator's zone.
pub fn time(at: Option<DateTime<Utc>>) -> Markup {
    match at {
        Some(at) => html! {
            time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) {
                (at.format("%Y-%m-%d %H:%M:%S UTC"))
            }
        },
        None => html! { span class="muted" { "—" } },
    }
}

/// A duration as a person reads it: `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub fn duration(d: Option<chrono::Duration>) -> Markup {
    let Some(d) = d else {
        return html! { span class="muted" { "—" } };
    };
    let ms = d.num_milliseconds().max(0);
    let text = if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {:02} s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{} h {:02} min", ms / 3_600_000, (ms / 60_000) % 60)
    };
    html! { span class="num" { (text) } }
}

/// A count, exact up to the cap.
pub fn count(n: u64) -> Markup {
    let text = if n > COUNT_CAP {
        format!("{}+", thousands(COUNT_CAP))
    } else {
        thousands(n)
    };
    html! { (text) }
}

/// `12345` → `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A progress bar (a native `<progress>`: no inline style, so the CSP needs no exception).
pub fn progress_bar(progress: i32, status: JobStatus) -> Markup {
    html! {
        span class={ "progress progress-" (status.as_str()) } {
            progress value=(progress) max="100" aria-label="Progress" { (progress) "%" }
            span class="num pct" { (progress) "%" }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_are_capped_and_grouped() {
        assert_eq!(super::count(1234).into_string(), "1,234");
        assert_eq!(super::count(10_000).into_string(), "10,000");
        assert_eq!(super::count(10_001).into_string(), "10,000+");
    }
}
