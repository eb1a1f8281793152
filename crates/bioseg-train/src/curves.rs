//! Training curves: a PNG with the loss (training and validation) and the validation Dice of
//! every class per epoch, drawn with `plotters` into memory and written atomically.
//!
//! Text uses DejaVu Sans embedded in the binary (crate `dejavu`), registered with plotters'
//! `ab_glyph` backend, so no system font is needed. Non-finite values (a NaN loss) are left
//! out of the lines rather than breaking the axes.

use std::path::Path;
use std::sync::OnceLock;

use plotters::backend::RGBPixel;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::TrainError;
use crate::train::unet::UnetEpoch;

/// Width of the curves PNG in pixels.
pub const CURVES_WIDTH: u32 = 1000;
/// Height of the curves PNG in pixels.
pub const CURVES_HEIGHT: u32 = 400;

/// The font family name the embedded font is registered under.
const FONT: &str = "sans-serif";

/// Registers the embedded font once per process.
fn register_font() -> Result<(), TrainError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok());
    if ok { Ok(()) } else { Err(TrainError::Plot("the embedded DejaVu Sans font could not be loaded".into())) }
}

/// A line: legend label, colour, `(epoch, value)` points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// Line colours: training loss, validation loss, then one per class.
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Draws `history` into `path` (a `.png`, [`CURVES_WIDTH`] × [`CURVES_HEIGHT`]): the training
/// and validation loss per epoch on the left, the validation Dice of every class per epoch
/// (0–1) on the right, with axis labels and legends (the classes by `class_names`, `class c`
/// past their end). Written atomically; an existing file is
/// replaced (it is rewritten after every epoch).
///
/// Errors: an empty history ([`TrainError::Config`]), a drawing failure ([`TrainError::Plot`]),
/// or the file cannot be written ([`TrainError::Data`]).
pub fn write_training_curves(path: &Path, history: &[UnetEpoch], class_names: &[String]) -> Result<(), TrainError> {
    if history.is_empty() {
        return Err(TrainError::Config(format!("no epochs to draw into {}", path.display())));
    }
    register_font()?;
    let (w, h) = (CURVES_WIDTH, CURVES_HEIGHT);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    draw(&mut buf, (w, h), history, class_names).map_err(|e| TrainError::Plot(format!("{}: {e}", path.display())))?;
    bioseg_data::write_rgb_u8_png(path, w, h, &buf)?;
    Ok(())
}

/// Renders the two charts into an RGB buffer.
fn draw(buf: &mut [u8], size: (u32, u32), history: &[UnetEpoch], class_names: &[String]) -> Result<(), String> {
    let root =
        BitMapBackend::<RGBPixel>::with_buffer_and_format(buf, size).map_err(|e| e.to_string())?.into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(size.0 / 2);
    let last_epoch = history.iter().map(|e| e.epoch).max().unwrap_or(1).max(1) as f64;
    let x_range = if last_epoch > 1.0 { 1.0..last_epoch } else { 0.5..1.5 };
    // Whole epochs only: at most 10 ticks, fractional ones left blank.
    let x_ticks = (last_epoch as usize).clamp(2, 10);
    let epoch_label = |x: &f64| {
        if (x - x.round()).abs() < 1e-6 { format!("{x:.0}") } else { String::new() }
    };

    // Loss.
    let finite = |v: f64| v.is_finite().then_some(v);
    let has_val = history.iter().any(|e| e.val_loss != 0.0 && e.val_loss.is_finite());
    let max_loss = history
        .iter()
        .flat_map(|e| [finite(e.train_loss), if has_val { finite(e.val_loss) } else { None }])
        .flatten()
        .fold(0.0f64, f64::max);
    // Headroom above the lines for the legend.
    let y_max = if max_loss > 0.0 { max_loss * 1.3 } else { 1.0 };
    let mut chart = ChartBuilder::on(&left)
        .caption("Loss", (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range.clone(), 0.0..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .x_labels(x_ticks)
        .x_label_formatter(&epoch_label)
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(|e| e.to_string())?;
    let mut series: Vec<Series> = vec![(
        "training",
        COLORS[0],
        history.iter().filter_map(|e| finite(e.train_loss).map(|v| (e.epoch as f64, v))).collect(),
    )];
    if has_val {
        series.push((
            "validation",
            COLORS[1],
            history.iter().filter_map(|e| finite(e.val_loss).map(|v| (e.epoch as f64, v))).collect(),
        ));
    }
    for (name, color, points) in series {
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font((FONT, 13))
        .draw()
        .map_err(|e| e.to_string())?;

    // Validation Dice per class.
    let classes = history.iter().map(|e| e.val_dice.len()).max().unwrap_or(0);
    let mut chart = ChartBuilder::on(&right)
        .caption("Validation Dice", (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range, 0.0..1.0)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("Dice")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .x_labels(x_ticks)
        .x_label_formatter(&epoch_label)
        .y_label_formatter(&|y| format!("{y:.1}"))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(|e| e.to_string())?;
    for c in 0..classes {
        let color = COLORS[(2 + c) % COLORS.len()];
        let points: Vec<(f64, f64)> = history
            .iter()
            .filter_map(|e| e.val_dice.get(c).copied().and_then(finite).map(|v| (e.epoch as f64, v)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(class_names.get(c).cloned().unwrap_or_else(|| format!("class {c}")))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(|e| e.to_string())?;
    }
    if classes > 0 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font((FONT, 13))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(epoch: usize, train_loss: f64, val_loss: f64, dice: [f64; 2]) -> UnetEpoch {
        UnetEpoch {
            epoch,
            train_loss,
            val_loss,
            val_dice: dice.to_vec(),
            val_iou: dice.to_vec(),
            val_pixel_error: 0.1,
            seconds: 1.0,
            images_per_second: 2.0,
        }
    }

    #[test]
    fn writes_a_png_of_the_expected_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let history =
            vec![epoch(1, 0.7, 0.65, [0.4, 0.6]), epoch(2, 0.5, 0.55, [0.55, 0.72]), epoch(3, 0.35, 0.5, [0.6, 0.8])];
        let names = ["membrane".to_string(), "interior".to_string()];
        write_training_curves(&path, &history, &names).unwrap();
        let img = bioseg_data::read_image(&path).unwrap();
        assert_eq!((img.width(), img.height(), img.channels()), (CURVES_WIDTH as usize, CURVES_HEIGHT as usize, 3));
        // Something was drawn in colour (the lines), not just a white page.
        let coloured = img
            .data
            .outer_iter()
            .flat_map(|row| row.outer_iter().map(|p| (p[0] - p[1]).abs() + (p[1] - p[2]).abs()).collect::<Vec<_>>())
            .filter(|&d| d > 60.0)
            .count();
        assert!(coloured > 500, "only {coloured} coloured pixels");
        // The legend names the classes.
        let unnamed = dir.path().join("unnamed.png");
        write_training_curves(&unnamed, &history, &[]).unwrap();
        assert_ne!(std::fs::read(&path).unwrap(), std::fs::read(&unnamed).unwrap());
        // Rewritten in place after every epoch.
        write_training_curves(&path, &history[..1], &names).unwrap();
    }

    #[test]
    fn odd_histories_do_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.png");
        assert!(matches!(write_training_curves(&path, &[], &[]), Err(TrainError::Config(_))));
        let history = vec![epoch(1, f64::NAN, 0.0, [f64::NAN, 0.5]), epoch(2, f64::INFINITY, 0.0, [0.1, 0.2])];
        write_training_curves(&path, &history, &[]).unwrap();
        let missing = dir.path().join("no/such/dir/c.png");
        assert!(matches!(write_training_curves(&missing, &history, &[]), Err(TrainError::Data(_))));
    }
}
