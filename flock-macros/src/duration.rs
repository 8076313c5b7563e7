//! Durations in attributes: a whole number and a unit, `"500ms"`, `"30s"`, `"5m"`, `"2h"`.

/// The units, longest first so that `ms` is not read as `m`.
const UNITS: [(&str, u64); 4] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

/// Parses a duration into milliseconds, or says what is wrong with it.
pub fn parse_millis(text: &str) -> Result<u64, String> {
    const EXAMPLE: &str = "write a whole number and a unit (`ms`, `s`, `m` or `h`), e.g. \"500ms\", \"30s\", \"5m\", \"2h\"";
    if text.is_empty() {
        return Err(format!("empty duration: {EXAMPLE}"));
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(format!(
            "invalid duration \"{text}\": it must start with a whole number; {EXAMPLE}"
        ));
    }
    if unit.is_empty() {
        return Err(format!(
            "duration \"{text}\" has no unit: write \"{number}ms\", \"{number}s\", \"{number}m\" or \"{number}h\""
        ));
    }
    let Some(&(_, factor)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!(
            "invalid unit `{unit}` in duration \"{text}\": {EXAMPLE}"
        ));
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("duration \"{text}\" is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_millis;

    #[test]
    fn accepts_every_unit() {
        assert_eq!(parse_millis("500ms"), Ok(500));
        assert_eq!(parse_millis("30s"), Ok(30_000));
        assert_eq!(parse_millis("5m"), Ok(300_000));
        assert_eq!(parse_millis("2h"), Ok(7_200_000));
        assert_eq!(parse_millis("0s"), Ok(0));
        assert_eq!(parse_millis("007s"), Ok(7_000));
    }

    #[test]
    fn rejects_malformed_durations_with_a_reason() {
        let reason = |text| parse_millis(text).unwrap_err();
        assert!(reason("").starts_with("empty duration"), "{}", reason(""));
        assert!(reason("5").contains("has no unit"), "{}", reason("5"));
        assert!(reason("5").contains("\"5s\""), "{}", reason("5"));
        assert!(
            reason("5x").contains("invalid unit `x`"),
            "{}",
            reason("5x")
        );
        assert!(reason("-1s").contains("must start with a whole number"));
        assert!(reason("s").contains("must start with a whole number"));
        assert!(reason("1.5s").contains("invalid unit `.5s`"));
        assert!(reason("30 s").contains("invalid unit ` s`"));
        assert!(reason("5sec").contains("invalid unit `sec`"));
    }

    #[test]
    fn rejects_overflow() {
        assert!(parse_millis("18446744073709551615ms").is_ok());
        assert!(
            parse_millis("18446744073709551616ms")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse_millis("18446744073709551615h")
                .unwrap_err()
                .contains("too large")
        );
    }
}
