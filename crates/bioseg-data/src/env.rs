//! Where the shared data lives, and the natural ordering of file names.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

/// Environment variable that points at the ISBI 2012 data folder.
pub const ISBI2012_ENV: &str = "BIOSEG_ISBI2012";

/// Default location of the ISBI 2012 data, relative to the workspace root.
pub const ISBI2012_DEFAULT: &str = "../shared/data/isbi2012";

/// The folder holding the ISBI 2012 data in the seed layout
/// (`<dir>/membrane/{train,test}/{image,label}`).
///
/// Taken from `$BIOSEG_ISBI2012` when it is set and not empty. Otherwise
/// `../shared/data/isbi2012` when that exists from the current folder (the
/// workspace root), else the same folder located from this crate's source tree
/// (so tests, which run in the crate's folder, find it too). The path is not
/// checked for existence: callers report a missing folder themselves.
pub fn isbi2012_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(ISBI2012_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let relative = Path::new(ISBI2012_DEFAULT);
    if relative.exists() {
        return relative.to_path_buf();
    }
    let from_source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/isbi2012");
    from_source.canonicalize().unwrap_or(from_source)
}

/// Compares two names in "natural" order: runs of ASCII digits compare by their
/// numeric value, so `"2.png" < "10.png"` and `"img9" < "img10"`.
///
/// Other characters compare case-insensitively first. Ties (e.g. `"01"` and
/// `"1"`, or `"A"` and `"a"`) are broken so that the order is total and consistent
/// with equality: only identical strings compare `Equal`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let mut tie = Ordering::Equal;
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let (si, sj) = (i, j);
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let (da, db) = (&a[si..i], &b[sj..j]);
            let (ta, tb) = (da.trim_start_matches('0'), db.trim_start_matches('0'));
            let ord = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
            if ord != Ordering::Equal {
                return ord;
            }
            // Equal values: fewer leading zeros first, decided only if nothing else differs.
            if tie == Ordering::Equal {
                tie = da.len().cmp(&db.len());
            }
        } else {
            // Compare one character (not byte) at a time so multi-byte UTF-8 stays intact.
            let ca = a[i..].chars().next().unwrap_or_default();
            let cb = b[j..].chars().next().unwrap_or_default();
            let (la, lb) = (ca.to_lowercase().next(), cb.to_lowercase().next());
            let ord = la.cmp(&lb);
            if ord != Ordering::Equal {
                return ord;
            }
            if tie == Ordering::Equal {
                tie = ca.cmp(&cb);
            }
            i += ca.len_utf8().max(1);
            j += cb.len_utf8().max(1);
        }
    }
    let rest = (ab.len() - i.min(ab.len())).cmp(&(bb.len() - j.min(bb.len())));
    rest.then(tie).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sort_by_value() {
        let mut v = vec!["10.png", "2.png", "1.png", "0.png", "21.png", "3.png"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["0.png", "1.png", "2.png", "3.png", "10.png", "21.png"]);
    }

    #[test]
    fn mixed_names() {
        let mut v = vec!["img10b", "img10a", "img9", "IMG2", "img", "abc"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["abc", "img", "IMG2", "img9", "img10a", "img10b"]);
    }

    #[test]
    fn order_is_total() {
        assert_eq!(natural_cmp("a1", "a1"), Ordering::Equal);
        assert_eq!(natural_cmp("a01", "a1"), Ordering::Greater);
        assert_eq!(natural_cmp("a1", "a01"), Ordering::Less);
        assert_ne!(natural_cmp("A", "a"), Ordering::Equal);
        assert_eq!(natural_cmp("A", "a"), natural_cmp("a", "A").reverse());
        assert_eq!(natural_cmp("", "a"), Ordering::Less);
        assert_eq!(natural_cmp("x", "x1"), Ordering::Less);
        // Huge numbers do not overflow.
        assert_eq!(natural_cmp("99999999999999999999999", "100000000000000000000000"), Ordering::Less);
        assert_eq!(natural_cmp("é2", "é10"), Ordering::Less);
    }

    #[test]
    fn isbi_dir_has_a_value() {
        // Whatever the environment, the function returns a non-empty path.
        assert!(!isbi2012_dir().as_os_str().is_empty());
    }
}
