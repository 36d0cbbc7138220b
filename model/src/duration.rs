//! Human durations in the style of Go's time.Duration (2.0s, 350.0ms, 12.0us): one rendering for
//! every text a person reads (the table, schedtrace lines, the viewer, profile comments).

/// Formats `ns` with one decimal in the largest unit that keeps the number >= 1.
pub fn human(ns: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ];
    for (scale, unit) in UNITS {
        if ns >= scale {
            let whole = ns / scale;
            let tenth = (ns % scale) * 10 / scale;
            return format!("{whole}.{tenth}{unit}");
        }
    }
    format!("{ns}ns")
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn formats() {
        assert_eq!(human(0), "0ns");
        assert_eq!(human(999), "999ns");
        assert_eq!(human(1_500), "1.5us");
        assert_eq!(human(2_000_000_000), "2.0s");
        assert_eq!(human(2_049_000_000), "2.0s");
        assert_eq!(human(350_000_000), "350.0ms");
        assert_eq!(human(90_000_000_000), "1.5m");
        assert_eq!(human(7_200_000_000_000), "2.0h");
    }
}
