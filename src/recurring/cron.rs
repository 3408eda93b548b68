//! Cron expressions in a time zone: parsing (by `croner` and `chrono-tz`), the next ticks under
//! the daylight-saving rules, and a plain-English description.
//!
//! An expression has 5 fields (`minute hour day-of-month month day-of-week`) or 6 with seconds
//! first; names (`MON-FRI`, `JAN`), steps, ranges, lists, `L`, `W`, `#` and the nicknames
//! (`@daily`, `@hourly`, …) are croner's. It is matched against the wall clock of its time zone,
//! and each wall-clock time it names is a **tick** that fires exactly once:
//!
//! - a time that does not exist (the clock jumps forward over it) fires once, at the first
//!   instant after the jump; ticks that land on the same instant fire once together;
//! - a time that happens twice (the clock goes back) fires once, at its first occurrence — so
//!   a schedule every 15 minutes does not run again while the repeated hour passes a second
//!   time.
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::error::Error;
use crate::text::quote;

/// A cron expression read in a time zone: when its ticks are.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use nightshift::recurring::CronSchedule;
///
/// let s = CronSchedule::new("0 9 * * MON-FRI", "Europe/Paris")?;
/// assert_eq!(s.describe(), "every weekday at 09:00 Europe/Paris");
/// // Friday 2030-01-04 10:00 in Paris → Monday 09:00 (08:00 UTC).
/// let after = Utc.with_ymd_and_hms(2030, 1, 4, 9, 0, 0).unwrap();
/// let next = s.next_after(after).unwrap();
/// assert_eq!(next, Utc.with_ymd_and_hms(2030, 1, 7, 8, 0, 0).unwrap());
/// # Ok::<(), nightshift::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expr: String,
    cron: Cron,
    tz: Tz,
}

/// The most wall-clock matches looked at to find one next tick (a repeated hour of a schedule
/// every second needs 3,600).
const MAX_STEPS: usize = 100_000;

impl CronSchedule {
    /// Reads `expr` in the time zone named `timezone` (an IANA name such as `Europe/Paris`, or
    /// `UTC`). A bad expression or zone is [`Error::InvalidArgs`] naming the field (`cron` or
    /// `timezone`) and quoting the value; so is an expression that never matches.
    pub fn new(expr: &str, timezone: &str) -> Result<Self, Error> {
        let cron = parse_cron(expr)?;
        let tz = parse_timezone(timezone)?;
        let schedule = CronSchedule {
            expr: expr.trim().to_owned(),
            cron,
            tz,
        };
        // An expression such as `0 0 30 2 *` parses but names no time at all.
        if schedule.next_after(Utc::now()).is_none() {
            return Err(invalid(
                "cron",
                format!("{} never matches a time", quote(expr.trim())),
            ));
        }
        Ok(schedule)
    }

    /// The expression as given (trimmed).
    pub fn expression(&self) -> &str {
        &self.expr
    }

    /// The time zone.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first tick strictly after `t`, as an instant; `None` if there is none.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut wall = t.with_timezone(&self.tz).naive_local();
        for _ in 0..MAX_STEPS {
            wall = self.cron.find_next_occurrence(&wall, false).ok()?;
            let at = self.instant_of(wall)?;
            // A wall time in the second pass of a repeated hour fired in its first pass; a
            // wall time in a jump forward may land on the instant that already fired.
            if at > t {
                return Some(at);
            }
        }
        None
    }

    /// [`CronSchedule::next_after`] in milliseconds since the Unix epoch.
    pub fn next_after_ms(&self, t: i64) -> Option<i64> {
        self.next_after(crate::clock::to_datetime(t))
            .map(|d| d.timestamp_millis())
    }

    /// The next `n` ticks strictly after `t`.
    pub fn next_runs(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut at = t;
        while out.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }

    /// The instant a wall-clock time fires at: itself; its first occurrence when the clock goes
    /// back over it; the first instant after the jump when the clock skips it.
    fn instant_of(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
            LocalResult::None => {
                // Transitions fall on whole minutes: the first minute that exists again is
                // where the jump lands. Two days covers every jump on record.
                let mut w = wall.with_second(0)?.with_nanosecond(0)?;
                for _ in 0..(2 * 24 * 60) {
                    w += chrono::Duration::minutes(1);
                    match self.tz.from_local_datetime(&w) {
                        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                            return Some(t.with_timezone(&Utc));
                        }
                        LocalResult::None => {}
                    }
                }
                None
            }
        }
    }

    /// In plain English, with the time zone: "every weekday at 09:00 Europe/Paris", "every
    /// 15 minutes UTC". Shapes it does not know in its own words are croner's description.
    pub fn describe(&self) -> String {
        let text = describe(&self.expr).unwrap_or_else(|| {
            let d = self.cron.describe();
            let d = d.trim_end_matches('.');
            let mut chars = d.chars();
            match chars.next() {
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => d.to_owned(),
            }
        });
        format!("{text} {}", self.tz.name())
    }
}

/// A cron expression: 5 fields, or 6 with seconds first.
pub fn parse_cron(expr: &str) -> Result<Cron, Error> {
    let trimmed = expr.trim();
    if trimmed.is_empty() {
        return Err(invalid("cron", "must not be empty".to_owned()));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(trimmed)
        .map_err(|e| {
            invalid(
                "cron",
                format!("{} is not a valid cron expression: {e}", quote(trimmed)),
            )
        })
}

/// An IANA time zone name (`Europe/Paris`, `America/New_York`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<Tz, Error> {
    let trimmed = name.trim();
    Tz::from_str(trimmed).map_err(|_| {
        invalid(
            "timezone",
            format!(
                "{} is not a known time zone (an IANA name such as Europe/Paris, \
                 America/New_York or UTC)",
                quote(trimmed)
            ),
        )
    })
}

fn invalid(field: &str, message: String) -> Error {
    Error::InvalidArgs {
        field: Some(field.to_owned()),
        message,
    }
}

// ---- plain English -------------------------------------------------------------------------

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// One field, as far as a description needs it.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    /// `*`
    Any,
    /// `*/n` (or `0/n`)
    Every(u32),
    /// Single values and ranges, sorted as written: `9`, `1-5`, `0,6`.
    Values(Vec<(u32, u32)>),
}

impl Field {
    fn read(text: &str, names: &[&str], first: u32) -> Option<Field> {
        if text == "*" || text == "?" {
            return Some(Field::Any);
        }
        if let Some(step) = text
            .strip_prefix("*/")
            .or_else(|| text.strip_prefix(&format!("{first}/")))
        {
            return step.parse().ok().filter(|n| *n > 0).map(Field::Every);
        }
        let value = |s: &str| -> Option<u32> {
            s.parse().ok().or_else(|| {
                names
                    .iter()
                    .position(|n| n.get(..3).is_some_and(|p| p.eq_ignore_ascii_case(s)))
                    .map(|i| i as u32 + first)
            })
        };
        let mut out = Vec::new();
        for part in text.split(',') {
            match part.split_once('-') {
                Some((a, b)) => out.push((value(a)?, value(b)?)),
                None => {
                    let v = value(part)?;
                    out.push((v, v));
                }
            }
        }
        Some(Field::Values(out))
    }

    /// The single value, if that is all it is.
    fn single(&self) -> Option<u32> {
        match self {
            Field::Values(v) if v.len() == 1 && v[0].0 == v[0].1 => Some(v[0].0),
            _ => None,
        }
    }

    /// Every value, if it names a few of them.
    fn list(&self) -> Option<Vec<u32>> {
        match self {
            Field::Values(v) => {
                let all: Vec<u32> = v.iter().flat_map(|(a, b)| *a..=*b).collect();
                (!all.is_empty() && all.len() <= 24).then_some(all)
            }
            _ => None,
        }
    }
}

/// "a, b and c".
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// The days part: `(as a prefix: "every weekday", as a qualifier: "on weekdays")`. `None`:
/// every day.
fn describe_days(dom: &Field, month: &Field, dow: &Field) -> Option<Option<(String, String)>> {
    let months = match month {
        Field::Any => None,
        m => Some(and_list(
            &m.list()?
                .iter()
                .map(|m| {
                    MONTHS
                        .get(m.checked_sub(1)? as usize)
                        .map(|s| s.to_string())
                })
                .collect::<Option<Vec<_>>>()?,
        )),
    };
    let days = match (dom, dow) {
        (Field::Any, Field::Any) => match &months {
            None => return Some(None),
            Some(m) => (format!("every day in {m}"), format!("in {m}")),
        },
        (Field::Any, dow) => {
            let mut list: Vec<u32> = dow.list()?.iter().map(|d| d % 7).collect();
            list.sort_unstable();
            list.dedup();
            let (every, on) = if list == [1, 2, 3, 4, 5] {
                ("every weekday".to_owned(), "on weekdays".to_owned())
            } else if list == [0, 6] {
                (
                    "every Saturday and Sunday".to_owned(),
                    "on Saturdays and Sundays".to_owned(),
                )
            } else {
                // Monday first, as people list them.
                list.sort_by_key(|d| (d + 6) % 7);
                let names: Vec<String> = list.iter().map(|d| DAYS[*d as usize].into()).collect();
                let plural: Vec<String> = names.iter().map(|n| format!("{n}s")).collect();
                (
                    format!("every {}", and_list(&names)),
                    format!("on {}", and_list(&plural)),
                )
            };
            match &months {
                None => (every, on),
                Some(m) => (format!("{every} in {m}"), format!("{on} in {m}")),
            }
        }
        (dom, Field::Any) => {
            let list = dom.list()?;
            if list.iter().any(|d| *d == 0 || *d > 31) {
                return None;
            }
            let days = and_list(&list.iter().map(|d| ordinal(*d)).collect::<Vec<_>>());
            let of = match &months {
                None => "every month".to_owned(),
                Some(m) => m.clone(),
            };
            let text = format!("on the {days} of {of}");
            (text.clone(), text)
        }
        _ => return None,
    };
    Some(Some(days))
}

/// A description in our own words of the shapes people write most, or `None`.
fn describe(expr: &str) -> Option<String> {
    let expr = expr.trim();
    let expanded = match expr.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 0 1 1 *",
        "@monthly" => "0 0 0 1 * *",
        "@weekly" => "0 0 0 * * 0",
        "@daily" | "@midnight" => "0 0 0 * * *",
        "@hourly" => "0 0 * * * *",
        _ => expr,
    };
    let mut parts: Vec<&str> = expanded.split_whitespace().collect();
    if parts.len() == 5 {
        parts.insert(0, "0");
    }
    let [sec, min, hour, dom, month, dow] = parts.as_slice() else {
        return None;
    };
    let sec = Field::read(sec, &[], 0)?;
    let min = Field::read(min, &[], 0)?;
    let hour = Field::read(hour, &[], 0)?;
    let dom = Field::read(dom, &[], 1)?;
    let month = Field::read(month, &MONTHS, 1)?;
    let dow = Field::read(dow, &DAYS, 0)?;
    let days = describe_days(&dom, &month, &dow)?;

    // A time of day (or a few): "at 09:00", "at 09:00 and 17:30".
    if let (Some(s), Some(m)) = (sec.single(), min.single())
        && let Some(hours) = hour.list()
        && hours.len() <= 6
        && hours.iter().all(|h| *h < 24)
        && s < 60
        && m < 60
    {
        let times: Vec<String> = hours
            .iter()
            .map(|h| match s {
                0 => format!("{h:02}:{m:02}"),
                s => format!("{h:02}:{m:02}:{s:02}"),
            })
            .collect();
        let at = format!("at {}", and_list(&times));
        return Some(match days {
            None => format!("every day {at}"),
            Some((every, _)) => format!("{every} {at}"),
        });
    }

    // Within one range of hours: "every hour from 09:00 to 17:00".
    if let Field::Values(r) = &hour
        && let [(a, b)] = r.as_slice()
        && a < b
        && *b < 24
        && sec.single() == Some(0)
    {
        let every = match &min {
            Field::Every(n) => {
                format!(
                    "every {n} minutes from {a:02}:00 to {b:02}:{:02}",
                    59 / n * n
                )
            }
            Field::Any => format!("every minute from {a:02}:00 to {b:02}:59"),
            m => {
                let m = m.single().filter(|m| *m < 60)?;
                format!("every hour from {a:02}:{m:02} to {b:02}:{m:02}")
            }
        };
        return Some(match days {
            None => every,
            Some((_, on)) => format!("{every} {on}"),
        });
    }

    // A repeating time: every second / n seconds / minute / n minutes / hour / n hours.
    let every = match (&sec, &min, &hour) {
        (Field::Any, Field::Any, Field::Any) => "every second".to_owned(),
        (Field::Every(n), Field::Any, Field::Any) => format!("every {n} seconds"),
        (s, Field::Any, Field::Any) if s.single() == Some(0) => "every minute".to_owned(),
        (s, Field::Every(n), Field::Any) if s.single() == Some(0) => format!("every {n} minutes"),
        (s, m, Field::Any) if s.single() == Some(0) && m.single() == Some(0) => {
            "every hour".to_owned()
        }
        (s, m, Field::Any) if s.single() == Some(0) => {
            format!("every hour at minute {}", m.single()?)
        }
        (s, m, Field::Every(n)) if s.single() == Some(0) && m.single() == Some(0) => {
            format!("every {n} hours")
        }
        (s, m, Field::Every(n)) if s.single() == Some(0) => {
            format!("every {n} hours at minute {}", m.single()?)
        }
        _ => return None,
    };
    Some(match days {
        None => every,
        Some((_, on)) => format!("{every} {on}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(expr: &str) -> String {
        CronSchedule::new(expr, "UTC").unwrap().describe()
    }

    #[test]
    fn describes_common_shapes_in_plain_english() {
        assert_eq!(d("0 9 * * 1-5"), "every weekday at 09:00 UTC");
        assert_eq!(d("0 9 * * MON-FRI"), "every weekday at 09:00 UTC");
        assert_eq!(d("30 0 3 * * *"), "every day at 03:00:30 UTC");
        assert_eq!(d("@daily"), "every day at 00:00 UTC");
        assert_eq!(d("*/15 * * * *"), "every 15 minutes UTC");
        assert_eq!(d("*/10 * * * * *"), "every 10 seconds UTC");
        assert_eq!(d("* * * * * *"), "every second UTC");
        assert_eq!(d("* * * * *"), "every minute UTC");
        assert_eq!(d("0 * * * *"), "every hour UTC");
        assert_eq!(d("30 * * * *"), "every hour at minute 30 UTC");
        assert_eq!(d("0 */2 * * *"), "every 2 hours UTC");
        assert_eq!(d("0 9,17 * * *"), "every day at 09:00 and 17:00 UTC");
        assert_eq!(
            d("0 8 * * SAT,SUN"),
            "every Saturday and Sunday at 08:00 UTC"
        );
        assert_eq!(
            d("0 8 * * 1,3,5"),
            "every Monday, Wednesday and Friday at 08:00 UTC"
        );
        assert_eq!(d("0 6 1 * *"), "on the 1st of every month at 06:00 UTC");
        assert_eq!(
            d("0 6 1,15 1 *"),
            "on the 1st and 15th of January at 06:00 UTC"
        );
        assert_eq!(d("*/5 * * * 1-5"), "every 5 minutes on weekdays UTC");
        assert_eq!(d("0 0 * * 0"), "every Sunday at 00:00 UTC");
        assert_eq!(d("0 0 * * 7"), "every Sunday at 00:00 UTC");
        assert_eq!(d("0 9-17 * * *"), "every hour from 09:00 to 17:00 UTC");
        assert_eq!(
            d("*/5 9-17 * * 1-5"),
            "every 5 minutes from 09:00 to 17:55 on weekdays UTC"
        );
        // Shapes of its own words fall back to croner's description.
        assert!(!d("0 0 L * *").is_empty());
        assert!(!d("5-10 9 * * *").is_empty());
    }

    #[test]
    fn refuses_bad_expressions_and_zones_naming_the_field() {
        for bad in [
            "",
            "nonsense",
            "0 0 32 * *",
            "61 * * * *",
            "* * * * * * *",
            "0 0 30 2 *",
        ] {
            match CronSchedule::new(bad, "UTC") {
                Err(Error::InvalidArgs { field, message }) => {
                    assert_eq!(field.as_deref(), Some("cron"), "{bad}: {message}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        match CronSchedule::new("0 9 * * *", "Mars/Olympus_Mons") {
            Err(Error::InvalidArgs { field, message }) => {
                assert_eq!(field.as_deref(), Some("timezone"));
                assert!(message.contains("Mars/Olympus_Mons"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
