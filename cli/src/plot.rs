//! `loss.svg`: the training loss and the periodic held-out loss against the step, drawn by
//! `plotters`' SVG backend (text as SVG `<text>`, so no fonts are needed to write it).

use plotters::prelude::*;
use std::io;
use std::path::Path;
use tokenformer_core::file::write_atomic;
use tokenformer_train::LogLine;

const TRAIN: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const HELDOUT: RGBColor = RGBColor(0xff, 0x7f, 0x0e);

/// The SVG of the curves in `log`; non-finite points are left out.
pub fn loss_svg(log: &[LogLine]) -> Result<String, String> {
    let finite = |pts: Vec<(u64, Option<f64>)>| -> Vec<(f64, f64)> {
        pts.into_iter()
            .filter_map(|(s, l)| Some((s as f64, l.filter(|l| l.is_finite())?)))
            .collect()
    };
    let train = finite(log.iter().map(|l| (l.step, Some(l.loss))).collect());
    let heldout = finite(log.iter().map(|l| (l.step, l.heldout_loss)).collect());
    let all = || train.iter().chain(&heldout);
    let x_max = all().map(|p| p.0).fold(1.0, f64::max);
    let (lo, hi) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.05).max(0.05);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 440)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("TokenFormer training loss (nats/token)", ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..x_max, (lo - pad)..(hi + pad))
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .draw()
            .map_err(e)?;
        for (name, pts, color) in [("train", train, TRAIN), ("held-out", heldout, HELDOUT)] {
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(e)?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(svg)
}

/// Write [`loss_svg`] of `log` to `path` atomically.
pub fn write_loss_svg(path: &Path, log: &[LogLine]) -> io::Result<()> {
    let svg = loss_svg(log).map_err(io::Error::other)?;
    write_atomic(path, |w| w.write_all(svg.as_bytes()))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(step: u64, loss: f64, heldout: Option<f64>) -> LogLine {
        LogLine {
            step,
            loss,
            lr: 1e-3,
            grad_norm: 1.0,
            tokens: step * 64,
            tokens_per_s: 100.0,
            heldout_loss: heldout,
            allreduce_s: None,
            heldout_loss_all: None,
        }
    }

    /// The points of each `<polyline>`, in document order.
    fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
        svg.split("<polyline")
            .skip(1)
            .map(|p| {
                let pts = p
                    .split("points=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                pts.split_whitespace()
                    .map(|xy| {
                        let (x, y) = xy.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn curves_labels_and_legend_are_drawn() {
        let mut log: Vec<LogLine> = (1..=40)
            .map(|s| line(s, 5.0 - s as f64 * 0.05, (s % 10 == 0).then_some(4.5)))
            .collect();
        log[39].heldout_loss_all = Some(9.0); // not a point of the periodic curve
        let svg = loss_svg(&log).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let texts: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .map(|t| {
                t.split_once('>')
                    .unwrap()
                    .1
                    .split("</text>")
                    .next()
                    .unwrap()
                    .trim()
            })
            .collect();
        for text in [
            "TokenFormer training loss (nats/token)",
            "train",
            "held-out",
            "step",
            "loss",
        ] {
            assert!(texts.contains(&text), "no <text> {text} in {texts:?}");
        }
        let lines = polylines(&svg);
        let train = lines.iter().find(|l| l.len() == 40).expect("train curve");
        let held = lines.iter().find(|l| l.len() == 4).expect("held-out curve");
        // Falling loss: later points are lower on the page (larger y), and x increases.
        assert!(train.windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 > w[0].1));
        // The held-out curve is flat at 4.5, inside the train curve's range.
        assert!(held.iter().all(|p| p.1 == held[0].1));
        assert!(held[0].1 > train[0].1 && held[0].1 < train[39].1);
    }

    #[test]
    fn degenerate_logs_still_give_an_svg() {
        let nan = [line(1, f64::NAN, Some(f64::INFINITY))];
        for log in [&[][..], &[line(1, 3.0, None)], &nan] {
            let svg = loss_svg(log).unwrap();
            assert!(svg.contains("</svg>"));
        }
    }
}
