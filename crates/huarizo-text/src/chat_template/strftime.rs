//! `strftime_now(format)`: Python's `datetime.strftime` in the C locale, for a UTC
//! instant. Covers the directives chat templates use (`%Y-%m-%d`, `%d %b %Y`,
//! `%B %d, %Y`, …) plus glibc's `%-d` style no-padding flag; unknown directives are
//! copied through unchanged, as glibc does.

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
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

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tm {
    year: i64,
    /// 1..=12
    month: u32,
    /// 1..=31
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Monday … 6 = Sunday
    weekday: u32,
    /// 1..=366
    yday: u32,
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

impl Tm {
    fn from_unix(t: i64) -> Tm {
        let days = t.div_euclid(86_400);
        let secs = t.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let leap_day = u32::from(month > 2 && is_leap(year));
        Tm {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
            // 1970-01-01 was a Thursday (3).
            weekday: (days + 3).rem_euclid(7) as u32,
            yday: CUM[(month - 1) as usize] + day + leap_day,
        }
    }
}

/// Formats the UTC instant `unix_seconds` like Python's `strftime(fmt)`.
pub(super) fn strftime(unix_seconds: i64, fmt: &str) -> String {
    let tm = Tm::from_unix(unix_seconds);
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let no_pad = chars.peek() == Some(&'-');
        if no_pad {
            chars.next();
        }
        let Some(d) = chars.next() else {
            out.push('%');
            if no_pad {
                out.push('-');
            }
            break;
        };
        let num = |out: &mut String, v: i64, width: usize| {
            if no_pad {
                out.push_str(&v.to_string());
            } else {
                out.push_str(&format!("{v:0width$}"));
            }
        };
        let hour12 = match tm.hour % 12 {
            0 => 12,
            h => h,
        };
        let day_name = DAYS[tm.weekday as usize];
        let month_name = MONTHS[(tm.month - 1) as usize];
        match d {
            'Y' => out.push_str(&tm.year.to_string()),
            'y' => num(&mut out, tm.year.rem_euclid(100), 2),
            'C' => num(&mut out, tm.year.div_euclid(100), 2),
            'm' => num(&mut out, tm.month.into(), 2),
            'd' => num(&mut out, tm.day.into(), 2),
            'e' => out.push_str(&format!("{:>2}", tm.day)),
            'H' => num(&mut out, tm.hour.into(), 2),
            'I' => num(&mut out, hour12.into(), 2),
            'M' => num(&mut out, tm.minute.into(), 2),
            'S' => num(&mut out, tm.second.into(), 2),
            'j' => num(&mut out, tm.yday.into(), 3),
            'p' => out.push_str(if tm.hour < 12 { "AM" } else { "PM" }),
            'a' => out.push_str(&day_name[..3]),
            'A' => out.push_str(day_name),
            'b' | 'h' => out.push_str(&month_name[..3]),
            'B' => out.push_str(month_name),
            'u' => out.push_str(&(tm.weekday + 1).to_string()),
            'w' => out.push_str(&((tm.weekday + 1) % 7).to_string()),
            'F' => out.push_str(&format!("{}-{:02}-{:02}", tm.year, tm.month, tm.day)),
            'T' | 'X' => out.push_str(&format!("{:02}:{:02}:{:02}", tm.hour, tm.minute, tm.second)),
            'R' => out.push_str(&format!("{:02}:{:02}", tm.hour, tm.minute)),
            'D' | 'x' => out.push_str(&format!(
                "{:02}/{:02}/{:02}",
                tm.month,
                tm.day,
                tm.year.rem_euclid(100)
            )),
            'c' => out.push_str(&format!(
                "{} {} {:>2} {:02}:{:02}:{:02} {}",
                &day_name[..3],
                &month_name[..3],
                tm.day,
                tm.hour,
                tm.minute,
                tm.second,
                tm.year
            )),
            'Z' => out.push_str("UTC"),
            'z' => out.push_str("+0000"),
            's' => out.push_str(&unix_seconds.to_string()),
            'n' => out.push('\n'),
            't' => out.push('\t'),
            '%' => out.push('%'),
            other => {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                out.push(other);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        // 2024-07-26 12:00:00 UTC, a Friday, day 208 of a leap year.
        let t = 1_721_995_200;
        assert_eq!(
            strftime(t, "%Y-%m-%d %H:%M:%S %a %A %b %B %j %y %p %I"),
            "2024-07-26 12:00:00 Fri Friday Jul July 208 24 PM 12"
        );
        assert_eq!(strftime(t, "%d %b %Y"), "26 Jul 2024");
        assert_eq!(strftime(t, "%B %d, %Y"), "July 26, 2024");
        assert_eq!(
            strftime(t, "%-d/%-m %% %q %c"),
            "26/7 % %q Fri Jul 26 12:00:00 2024"
        );
        assert_eq!(strftime(0, "%Y-%m-%d %A %j"), "1970-01-01 Thursday 001");
        assert_eq!(strftime(951_782_400, "%F %j"), "2000-02-29 060");
        assert_eq!(strftime(-86_400, "%F %A"), "1969-12-31 Wednesday");
    }
}
