//! Times as people read them: on a watch's clock (its IANA zone), never in UTC or the
//! server's zone unless that is the watch's. Each timestamp is converted on its own, so
//! it carries the offset in force at that moment (EST in winter, EDT in summer) even
//! when a list spans a daylight-saving change. Stored times stay UTC.

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;

/// A stored watch's clock: its configured zone, or for a watch no longer configured the
/// zone it last had.
pub fn watch_zone(config: &crate::config::Config, watch: &crate::store::WatchRow) -> Tz {
    match config.watch(&watch.name) {
        Some(_) => config.watch_zone(&watch.name),
        None => {
            crate::config::parse_timezone(&watch.timezone).unwrap_or_else(|_| config.general_zone())
        }
    }
}

/// The calendar day of `t` on the clock of `tz` (`2026-11-23`).
pub fn date(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d").to_string()
}

/// `2026-11-23 22:30`, for tables whose heading names the zone.
pub fn minute(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

/// `2026-11-23 22:30 EST`: the zone's abbreviation (or its offset, `+0530`, where it has
/// none) as of that moment.
pub fn minute_zoned(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// `2026-11-23 22:30` when `tz` is the zone the reader was told about (`told`),
/// otherwise marked: `2026-11-23 22:30 EST`.
pub fn minute_marked(t: DateTime<Utc>, tz: Tz, told: Tz) -> String {
    if tz == told {
        minute(t, tz)
    } else {
        minute_zoned(t, tz)
    }
}

/// As a sentence says it: `Mon 23 Nov 22:30 EST`, with the year when it is not the
/// year of `now` on the same clock (`Fri 20 Nov 2026 09:00 CET`).
pub fn spoken(t: DateTime<Utc>, tz: Tz, now: DateTime<Utc>) -> String {
    let local = t.with_timezone(&tz);
    if local.year() == now.with_timezone(&tz).year() {
        local.format("%a %-d %b %H:%M %Z").to_string()
    } else {
        local.format("%a %-d %b %Y %H:%M %Z").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn a_time_is_read_on_the_watchs_clock_with_its_zone() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let t = utc(2026, 11, 24, 3, 30);
        assert_eq!(date(t, ny), "2026-11-23");
        assert_eq!(minute_zoned(t, ny), "2026-11-23 22:30 EST");
        assert_eq!(spoken(t, ny, t), "Mon 23 Nov 22:30 EST");
        assert_eq!(
            spoken(t, ny, utc(2027, 1, 5, 12, 0)),
            "Mon 23 Nov 2026 22:30 EST"
        );
        assert_eq!(minute_marked(t, ny, ny), "2026-11-23 22:30");
        assert_eq!(minute_marked(t, Tz::UTC, ny), "2026-11-24 03:30 UTC");
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(minute_zoned(t, kolkata), "2026-11-24 09:00 IST");
    }

    #[test]
    fn each_time_carries_the_offset_in_force_then_across_dst_changes() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // US clocks go forward at 02:00 EST on 8 March 2026 and back at 02:00 EDT on
        // 1 November 2026.
        assert_eq!(
            minute_zoned(utc(2026, 3, 8, 6, 59), ny),
            "2026-03-08 01:59 EST"
        );
        assert_eq!(
            minute_zoned(utc(2026, 3, 8, 7, 0), ny),
            "2026-03-08 03:00 EDT"
        );
        assert_eq!(
            minute_zoned(utc(2026, 11, 1, 5, 30), ny),
            "2026-11-01 01:30 EDT"
        );
        assert_eq!(
            minute_zoned(utc(2026, 11, 1, 6, 30), ny),
            "2026-11-01 01:30 EST"
        );
        let paris: Tz = "Europe/Paris".parse().unwrap();
        // Europe changes on 29 March and 25 October 2026, at 01:00 UTC.
        assert_eq!(
            spoken(utc(2026, 3, 29, 0, 30), paris, utc(2026, 3, 29, 0, 30)),
            "Sun 29 Mar 01:30 CET"
        );
        assert_eq!(
            spoken(utc(2026, 3, 29, 1, 30), paris, utc(2026, 3, 29, 0, 30)),
            "Sun 29 Mar 03:30 CEST"
        );
        assert_eq!(
            minute_zoned(utc(2026, 10, 25, 0, 30), paris),
            "2026-10-25 02:30 CEST"
        );
        assert_eq!(
            minute_zoned(utc(2026, 10, 25, 1, 30), paris),
            "2026-10-25 02:30 CET"
        );
    }
}
