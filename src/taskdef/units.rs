//! ECS's task-level `cpu` and `memory` strings: `"256"` or `"0.25 vCPU"`; `"512"` or `"2 GB"`.

/// Parses a task-level `cpu` string into CPU units (1024 = one vCPU).
pub fn parse_cpu_units(text: &str) -> Result<u32, String> {
    parse_quantity(text, &["vcpu"], 1024).map_err(|why| {
        format!("{why}: expected CPU units such as \"256\" or vCPUs such as \"0.25 vCPU\"")
    })
}

/// Parses a task-level `memory` string into MiB.
pub fn parse_memory_mib(text: &str) -> Result<u32, String> {
    parse_quantity(text, &["gb", "gib"], 1024)
        .map_err(|why| format!("{why}: expected MiB such as \"512\" or GB such as \"2 GB\""))
}

/// `NUMBER` in the base unit, or `NUMBER UNIT` (any case, space optional) scaled by `scale`.
fn parse_quantity(text: &str, units: &[&str], scale: u32) -> Result<u32, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit = unit.trim();
    if number.is_empty() {
        return Err(format!("\"{text}\" has no number"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("\"{text}\" is not a number"))?;
    let scaled = if unit.is_empty() {
        if number.contains('.') {
            return Err(format!("\"{text}\" must be a whole number without a unit"));
        }
        value
    } else if units.iter().any(|u| unit.eq_ignore_ascii_case(u)) {
        value * f64::from(scale)
    } else {
        return Err(format!("\"{text}\" has an unknown unit \"{unit}\""));
    };
    if scaled.fract() != 0.0 || scaled <= 0.0 || scaled > f64::from(u32::MAX) {
        return Err(format!("\"{text}\" is not a positive whole amount"));
    }
    Ok(scaled as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_strings() {
        for (text, units) in [
            ("256", 256),
            ("1 vCPU", 1024),
            ("0.25 vcpu", 256),
            ("2vCPU", 2048),
            (" 4096 ", 4096),
        ] {
            assert_eq!(parse_cpu_units(text), Ok(units), "{text}");
        }
        for bad in ["", "vCPU", "1.5", "1 core", "-1", "0", "abc"] {
            assert!(parse_cpu_units(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_strings() {
        for (text, mib) in [("512", 512), ("2 GB", 2048), ("0.5 GB", 512), ("1GB", 1024)] {
            assert_eq!(parse_memory_mib(text), Ok(mib), "{text}");
        }
        for bad in ["", "2 TB", "1.5", "GB"] {
            assert!(parse_memory_mib(bad).is_err(), "{bad}");
        }
    }
}
