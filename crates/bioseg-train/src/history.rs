//! The files a U-Net run keeps beside its checkpoints, rewritten after every epoch:
//! `history.json` (the epochs as serialised), `history.csv` (one row per epoch, one Dice and IoU
//! column per class) and `curves.png` (the training curves). Each is written atomically; a failure
//! is logged and training goes on.

use std::path::Path;

use crate::train::unet::UnetEpoch;

/// Writes history.json, history.csv and curves.png (atomically) into `out`; `class_names`
/// label the curves' classes.
pub fn write_history(out: &Path, history: &[UnetEpoch], class_names: &[String]) {
    let json = serde_json::to_vec_pretty(history).expect("serialises");
    if let Err(e) = bioseg_data::write_bytes_atomic(out.join("history.json"), &json) {
        tracing::warn!("cannot write history.json: {e}");
    }
    let classes = history.first().map(|h| h.val_dice.len()).unwrap_or(0);
    let mut csv = String::from("epoch,train_loss,val_loss,val_pixel_error,seconds,images_per_second");
    for c in 0..classes {
        csv += &format!(",val_dice_{c},val_iou_{c}");
    }
    csv.push('\n');
    for h in history {
        csv += &format!(
            "{},{:.6},{:.6},{:.6},{:.3},{:.3}",
            h.epoch, h.train_loss, h.val_loss, h.val_pixel_error, h.seconds, h.images_per_second
        );
        for c in 0..classes {
            csv += &format!(",{:.6},{:.6}", h.val_dice[c], h.val_iou[c]);
        }
        csv.push('\n');
    }
    if let Err(e) = bioseg_data::write_bytes_atomic(out.join("history.csv"), csv.as_bytes()) {
        tracing::warn!("cannot write history.csv: {e}");
    }
    if let Err(e) = crate::curves::write_training_curves(&out.join("curves.png"), history, class_names) {
        tracing::warn!("cannot write curves.png: {e}");
    }
}
