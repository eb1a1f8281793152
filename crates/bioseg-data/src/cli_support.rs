//! Plumbing shared by the `bioseg` and `bioseg-train` command lines: logging set-up, one-line
//! error reports, and the allocator option both binaries set.

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h` of libmimalloc-sys 0.1.49, v2 and v3 alike;
/// the bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes mimalloc (both binaries' global allocator) keep freed pages for `millis` before
/// returning them to the kernel (never when negative), instead of its default 10 ms, unless
/// `MIMALLOC_PURGE_DELAY` says otherwise. Large tensors come and go for every tile and every training step; pages
/// returned too early are faulted in and zeroed again (measured: inference F=16 window −8 %,
/// U-Net F=16 training step 0.55 → 0.38 s; BENCHMARKS.md). Call first thing in `main`.
pub fn keep_freed_pages(millis: i64) {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a process-wide allocator option (an atomic store in mimalloc).
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, millis as std::ffi::c_long) };
    }
}

/// Sets up `tracing` to stderr: `default_filter` at verbosity 0, then info / debug / trace for
/// each `-v`; `RUST_LOG` overrides. Colours only on a terminal.
pub fn init_logging(verbose: u8, default_filter: &str) {
    let level = match verbose {
        0 => default_filter,
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .try_init();
}

/// An error and its causes on one line, skipping causes whose text the line already holds.
pub fn error_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cause = Some(error);
    while let Some(e) = cause {
        let msg = e.to_string();
        if !out.contains(&msg) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&msg);
        }
        cause = e.source();
    }
    out.replace('\n', " ")
}

/// `[0.9421, 0.7763]`: scores for a user-facing line, each rounded to four decimals.
pub fn rounded_list(values: &[f64]) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("{v:.4}")).collect();
    format!("[{}]", items.join(", "))
}

/// `membrane 0.8813, interior 0.9712`: one score per class for a user-facing line, named (`class
/// i` past the end of `names`) and rounded to four decimals.
pub fn named_scores(names: &[String], values: &[f64]) -> String {
    let items: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| match names.get(i) {
            Some(name) => format!("{name} {v:.4}"),
            None => format!("class {i} {v:.4}"),
        })
        .collect();
    items.join(", ")
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer {0}")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_are_joined_once() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(super::error_line(&e), "outer inner");
        let e = std::io::Error::other("a\nb");
        assert_eq!(super::error_line(&e), "a b");
    }

    #[test]
    fn score_lists_are_rounded_to_four_decimals() {
        assert_eq!(super::rounded_list(&[0.8325459317585302, 0.00004, 1.0]), "[0.8325, 0.0000, 1.0000]");
        assert_eq!(super::rounded_list(&[]), "[]");
    }

    #[test]
    fn scores_are_named_by_class() {
        let names = vec!["membrane".to_string(), "interior".to_string()];
        assert_eq!(super::named_scores(&names, &[0.88134, 0.97116]), "membrane 0.8813, interior 0.9712");
        assert_eq!(super::named_scores(&names[..1], &[0.5, 0.25]), "membrane 0.5000, class 1 0.2500");
    }
}
