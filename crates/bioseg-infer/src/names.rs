//! Values named on the command line from a fixed table (`OutputType`, `Blend`): one table per
//! type gives both its parsing and its `Display`, so the two cannot disagree.

/// The value named `s` in `table`, or `unknown WHAT `s` (expected a, b or c)`.
pub(crate) fn parse<T: Copy>(table: &[(T, &str)], what: &str, s: &str) -> Result<T, String> {
    table.iter().find(|(_, name)| *name == s).map(|(value, _)| *value).ok_or_else(|| {
        let names: Vec<&str> = table.iter().map(|(_, name)| *name).collect();
        let list = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.concat(),
        };
        format!("unknown {what} `{s}` (expected {list})")
    })
}

/// The name of `value` in `table` (empty when the table misses it).
pub(crate) fn name_of<T: PartialEq>(table: &[(T, &'static str)], value: &T) -> &'static str {
    table.iter().find(|(v, _)| v == value).map_or("", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_through_one_table() {
        let table = [(1, "one"), (2, "two"), (3, "three")];
        assert_eq!(parse(&table, "number", "two"), Ok(2));
        assert_eq!(name_of(&table, &3), "three");
        assert_eq!(parse(&table, "number", "four"), Err("unknown number `four` (expected one, two or three)".into()));
        assert_eq!(parse(&[(0, "only")], "x", "y"), Err("unknown x `y` (expected only)".into()));
    }
}
