//! Progress bars of long predictions (drawn on stderr, hidden when quiet or not a terminal).

/// A tile progress bar (hidden when quiet or stderr is not a terminal).
pub fn tile_bar(total: u64, quiet: bool) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(total);
    if quiet {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "tiles {bar:30.cyan/blue} {pos}/{len} [{elapsed_precise}<{eta_precise}] {per_sec}",
        )
        .expect("valid template"),
    );
    pb
}
