//! Progress bars of long predictions (drawn on stderr, hidden when quiet or not a terminal).

/// A tile progress bar (hidden when quiet or stderr is not a terminal).
pub fn tile_bar(total: u64, quiet: bool) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(total);
    if quiet {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    pb.set_style(tile_style());
    pb
}

/// The style of tile bars: tiles done of the total, time spent and left, tiles per second.
pub fn tile_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(
        "tiles {bar:30.cyan/blue} {pos}/{len} [{elapsed_precise}<{eta_precise}] {per_sec}",
    )
    .expect("valid template")
}

/// The style of volume bars (length 1000, the message says slices done and speed).
pub fn slice_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("slices {bar:30.cyan/blue} {msg} [{elapsed_precise}<{eta_precise}]")
        .expect("valid template")
}
