//! Cron schedules as upstream parses them (robfig/cron's standard parser): five fields
//! (minute hour day-of-month month day-of-week) with `*`, `?`, lists, ranges, steps and
//! month/weekday names, or a descriptor (`@hourly`, `@daily`, …), evaluated in a time zone.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schedule {schedule:?}: {reason}")]
pub struct Error {
    schedule: String,
    reason: String,
}

/// One field: the set of allowed values as a bitmask, and whether it was `*` or `?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    bits: u64,
    star: bool,
}

impl Field {
    fn has(self, value: i8) -> bool {
        self.bits & (1 << value) != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minute: Field,
    hour: Field,
    day: Field,
    month: Field,
    weekday: Field,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(text: &str, names: &[&str], offset: u8) -> Option<u8> {
    let lower = text.to_ascii_lowercase();
    names
        .iter()
        .position(|n| *n == lower)
        .map(|i| i as u8 + offset)
        .or_else(|| text.parse().ok())
}

fn field(text: &str, min: u8, max: u8, names: &[&str], offset: u8) -> Result<Field, String> {
    let mut bits = 0u64;
    let star = text == "*" || text == "?";
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                Some(s.parse::<u8>().map_err(|_| format!("bad step {s:?}"))?),
            ),
            None => (part, None),
        };
        let (low, high) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = value(a, names, offset).ok_or(format!("bad value {a:?}"))?;
            let b = value(b, names, offset).ok_or(format!("bad value {b:?}"))?;
            (a, b)
        } else {
            let a = value(range, names, offset).ok_or(format!("bad value {range:?}"))?;
            // `a/n` means from a to the end, as robfig/cron reads it.
            (a, if step.is_some() { max } else { a })
        };
        if low < min || high > max || low > high {
            return Err(format!("{part:?} is outside {min}-{max}"));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err("step must be positive".into());
        }
        for v in (low..=high).step_by(step.into()) {
            bits |= 1 << v;
        }
    }
    Ok(Field { bits, star })
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, Error> {
        let err = |reason: String| Error {
            schedule: text.to_owned(),
            reason,
        };
        let expanded = match text.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(err(format!("expected 5 fields, found {}", fields.len())));
        };
        Ok(Schedule {
            minute: field(minute, 0, 59, &[], 0).map_err(err)?,
            hour: field(hour, 0, 23, &[], 0).map_err(err)?,
            day: field(day, 1, 31, &[], 0).map_err(err)?,
            month: field(month, 1, 12, &MONTHS, 1).map_err(err)?,
            weekday: field(weekday, 0, 6, &WEEKDAYS, 0).map_err(err)?,
        })
    }

    /// Day-of-month and day-of-week combine with OR when both are restricted, else AND.
    fn day_matches(&self, date: Date) -> bool {
        let dom = self.day.has(date.day());
        let dow = self.weekday.has(date.weekday().to_sunday_zero_offset());
        if self.day.star || self.weekday.star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled time strictly after `after`, within five years.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(tz.clone()).datetime();
        let mut t = DateTime::from_parts(
            start.date(),
            Time::new(start.hour(), start.minute(), 0, 0).ok()?,
        )
        .checked_add(jiff::Span::new().minutes(1))
        .ok()?;
        let limit = start.date().year() + 5;
        while t.year() <= limit {
            if !self.month.has(t.month()) {
                t = t
                    .date()
                    .first_of_month()
                    .checked_add(jiff::Span::new().months(1))
                    .ok()?
                    .into();
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t.date().tomorrow().ok()?.into();
                continue;
            }
            if !self.hour.has(t.hour()) {
                let hour = DateTime::from_parts(t.date(), Time::new(t.hour(), 0, 0, 0).ok()?);
                t = hour.checked_add(jiff::Span::new().hours(1)).ok()?;
                continue;
            }
            if !self.minute.has(t.minute()) {
                t = t.checked_add(jiff::Span::new().minutes(1)).ok()?;
                continue;
            }
            // A local time skipped by a DST change runs at the time after the gap.
            let at = tz.to_ambiguous_zoned(t).compatible().ok()?.timestamp();
            if at > after {
                return Some(at);
            }
            t = t.checked_add(jiff::Span::new().minutes(1)).ok()?;
        }
        None
    }
}

/// The time zone of a CronJob: `spec.timeZone`, or the controller manager's own.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None => Ok(TimeZone::system()),
        Some(name) => TimeZone::get(name).map_err(|e| format!("unknown time zone {name:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(schedule: &str, after: &str, tz: &str) -> String {
        let tz = TimeZone::get(tz).unwrap();
        let after: Timestamp = after.parse().unwrap();
        let at = Schedule::parse(schedule)
            .unwrap()
            .next_after(after, &tz)
            .unwrap();
        at.to_zoned(tz).strftime("%Y-%m-%d %H:%M %a").to_string()
    }

    #[test]
    fn cron_schedules_find_their_next_time() {
        assert_eq!(
            next("*/15 * * * *", "2026-03-01T10:07:30Z", "UTC"),
            "2026-03-01 10:15 Sun"
        );
        assert_eq!(
            next("@hourly", "2026-03-01T10:00:00Z", "UTC"),
            "2026-03-01 11:00 Sun"
        );
        assert_eq!(
            next("30 9 * * mon-fri", "2026-03-06T10:00:00Z", "UTC"),
            "2026-03-09 09:30 Mon"
        );
        assert_eq!(
            next("0 0 1 jan *", "2026-03-01T00:00:00Z", "UTC"),
            "2027-01-01 00:00 Fri"
        );
        // Both day fields restricted: either may match.
        assert_eq!(
            next("0 0 13 * 5", "2026-03-01T00:00:00Z", "UTC"),
            "2026-03-06 00:00 Fri"
        );
        assert_eq!(
            next("5/20 * * * *", "2026-03-01T10:26:00Z", "UTC"),
            "2026-03-01 10:45 Sun"
        );
    }

    #[test]
    fn cron_schedules_run_in_their_time_zone() {
        assert_eq!(
            next("0 9 * * *", "2026-07-01T12:00:00Z", "America/New_York"),
            "2026-07-01 09:00 Wed"
        );
        let tz = TimeZone::get("Asia/Tokyo").unwrap();
        let at = Schedule::parse("0 9 * * *")
            .unwrap()
            .next_after("2026-07-01T12:00:00Z".parse().unwrap(), &tz)
            .unwrap();
        assert_eq!(at.to_string(), "2026-07-02T00:00:00Z");
    }

    #[test]
    fn cron_schedules_reject_what_upstream_rejects() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "* * 0 * *",
            "*/0 * * * *",
            "* * * foo *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }
}
