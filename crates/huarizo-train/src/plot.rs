//! `loss.png`: train loss per step as a line, eval losses as squares, on axes with tick
//! labels drawn in a built-in 3×5 bitmap font (no system fonts), encoded with `png`.

use anyhow::{Context, Result};
use std::path::Path;

/// Image width in pixels.
pub const WIDTH: u32 = 800;
/// Image height in pixels.
pub const HEIGHT: u32 = 480;
/// Colour of the train-loss line.
pub const TRAIN_COLOR: [u8; 3] = [31, 119, 180];
/// Colour of the eval-loss points.
pub const EVAL_COLOR: [u8; 3] = [230, 110, 0];
const AXIS_COLOR: [u8; 3] = [0, 0, 0];
const GRID_COLOR: [u8; 3] = [225, 225, 225];
const FONT_SCALE: i64 = 2;

// Plot area, in pixels.
const LEFT: i64 = 80;
const RIGHT: i64 = WIDTH as i64 - 20;
const TOP: i64 = 30;
const BOTTOM: i64 = HEIGHT as i64 - 50;

/// An RGB image.
struct Canvas {
    w: i64,
    h: i64,
    rgb: Vec<u8>, // (H, W, 3)
}

impl Canvas {
    fn new(w: u32, h: u32) -> Canvas {
        Canvas {
            w: i64::from(w),
            h: i64::from(h),
            rgb: vec![255; w as usize * h as usize * 3],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if (0..self.w).contains(&x) && (0..self.h).contains(&y) {
            let i = ((y * self.w + x) * 3) as usize;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.set(x, y, c);
            }
        }
    }

    /// A line two pixels thick (Bresenham).
    fn line(&mut self, (mut x0, mut y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            self.rect(x0, y0, x0 + 1, y0 + 1, c);
            if x0 == x1 && y0 == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }

    /// Draws `text` with its top-left corner at (x, y).
    fn text(&mut self, x: i64, y: i64, text: &str, c: [u8; 3]) {
        for (k, ch) in text.chars().enumerate() {
            let rows = glyph(ch);
            let gx = x + k as i64 * 4 * FONT_SCALE;
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..3 {
                    if bits & (0b100 >> col) != 0 {
                        let px = gx + col * FONT_SCALE;
                        let py = y + r as i64 * FONT_SCALE;
                        self.rect(px, py, px + FONT_SCALE - 1, py + FONT_SCALE - 1, c);
                    }
                }
            }
        }
    }
}

/// Width in pixels of `text` drawn by [`Canvas::text`].
fn text_width(text: &str) -> i64 {
    (text.chars().count() as i64 * 4 - 1) * FONT_SCALE
}

/// The 3×5 glyph of `ch` (rows top to bottom, bit 2 = left column); unknown: blank.
fn glyph(ch: char) -> [u8; 5] {
    match ch.to_ascii_uppercase() {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b001, 0b001, 0b001],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        '-' => [0b000, 0b000, 0b111, 0b000, 0b000],
        'A' => [0b010, 0b101, 0b111, 0b101, 0b101],
        'E' => [0b111, 0b100, 0b110, 0b100, 0b111],
        'I' => [0b111, 0b010, 0b010, 0b010, 0b111],
        'L' => [0b100, 0b100, 0b100, 0b100, 0b111],
        'N' => [0b110, 0b101, 0b101, 0b101, 0b101],
        'O' => [0b010, 0b101, 0b101, 0b101, 0b010],
        'P' => [0b110, 0b101, 0b110, 0b100, 0b100],
        'R' => [0b110, 0b101, 0b110, 0b101, 0b101],
        'S' => [0b011, 0b100, 0b010, 0b001, 0b110],
        'T' => [0b111, 0b010, 0b010, 0b010, 0b010],
        'V' => [0b101, 0b101, 0b101, 0b101, 0b010],
        _ => [0; 5],
    }
}

/// A "nice" tick spacing (1, 2 or 5 × 10^k) giving about `n` ticks over `range`.
pub fn nice_step(range: f64, n: usize) -> f64 {
    let raw = (range / n.max(1) as f64).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Draws `train_loss` (one value per step, steps 1..=n) and `eval_loss` (`(step, loss)`
/// points) into a PNG at `path`.
pub fn write_loss_plot(path: &Path, train_loss: &[f64], eval_loss: &[(usize, f64)]) -> Result<()> {
    let bytes = render_loss_plot(train_loss, eval_loss)?;
    std::fs::write(path, bytes).with_context(|| format!("{}: write", path.display()))
}

/// The PNG bytes of [`write_loss_plot`].
pub fn render_loss_plot(train_loss: &[f64], eval_loss: &[(usize, f64)]) -> Result<Vec<u8>> {
    let mut c = Canvas::new(WIDTH, HEIGHT);
    let values = train_loss
        .iter()
        .copied()
        .chain(eval_loss.iter().map(|e| e.1))
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    let ystep = nice_step(hi - lo, 5);
    let (y0, y1) = ((lo / ystep).floor() * ystep, (hi / ystep).ceil() * ystep);
    let last_step = train_loss
        .len()
        .max(eval_loss.iter().map(|e| e.0).max().unwrap_or(0))
        .max(1);
    let (x0, x1) = (0.0, last_step as f64);
    let xstep = nice_step(x1 - x0, 8).max(1.0);
    let px = |s: f64| LEFT + ((s - x0) / (x1 - x0) * (RIGHT - LEFT) as f64).round() as i64;
    let py = |v: f64| BOTTOM - ((v - y0) / (y1 - y0) * (BOTTOM - TOP) as f64).round() as i64;

    // Grid and tick labels.
    let decimals = (-ystep.log10().floor()).max(0.0) as usize;
    let mut v = y0;
    while v <= y1 + ystep * 1e-6 {
        let y = py(v);
        c.line((LEFT, y), (RIGHT, y), GRID_COLOR);
        c.rect(LEFT - 6, y, LEFT - 1, y + 1, AXIS_COLOR);
        let label = format!("{v:.decimals$}");
        c.text(LEFT - 10 - text_width(&label), y - 5, &label, AXIS_COLOR);
        v += ystep;
    }
    let mut s = x0;
    while s <= x1 + 1e-9 {
        let x = px(s);
        c.line((x, TOP), (x, BOTTOM), GRID_COLOR);
        c.rect(x, BOTTOM + 1, x + 1, BOTTOM + 6, AXIS_COLOR);
        let label = format!("{}", s as u64);
        c.text(x - text_width(&label) / 2, BOTTOM + 10, &label, AXIS_COLOR);
        s += xstep;
    }
    // Axes and titles.
    c.line((LEFT, TOP), (LEFT, BOTTOM), AXIS_COLOR);
    c.line((LEFT, BOTTOM), (RIGHT, BOTTOM), AXIS_COLOR);
    c.text(
        (LEFT + RIGHT) / 2 - text_width("step") / 2,
        BOTTOM + 30,
        "step",
        AXIS_COLOR,
    );
    c.text(10, TOP - 20, "loss", AXIS_COLOR);
    // Legend.
    let lx = RIGHT - 150;
    c.rect(lx, TOP - 16, lx + 16, TOP - 15, TRAIN_COLOR);
    c.text(lx + 22, TOP - 20, "train", AXIS_COLOR);
    c.rect(lx + 80, TOP - 18, lx + 85, TOP - 13, EVAL_COLOR);
    c.text(lx + 92, TOP - 20, "eval", AXIS_COLOR);

    // Curves: train loss of step k (1-based) at x = k.
    let pts: Vec<(i64, i64)> = train_loss
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, &v)| (px((k + 1) as f64), py(v)))
        .collect();
    for w in pts.windows(2) {
        c.line(w[0], w[1], TRAIN_COLOR);
    }
    if let [only] = pts.as_slice() {
        c.rect(only.0 - 1, only.1 - 1, only.0 + 1, only.1 + 1, TRAIN_COLOR);
    }
    for &(step, v) in eval_loss.iter().filter(|e| e.1.is_finite()) {
        let (x, y) = (px(step as f64), py(v));
        c.rect(x - 3, y - 3, x + 3, y + 3, EVAL_COLOR);
    }

    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, WIDTH, HEIGHT);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().context("loss.png: header")?;
        w.write_image_data(&c.rgb).context("loss.png: image data")?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn count(rgb: &[u8], c: [u8; 3]) -> usize {
        rgb.chunks_exact(3).filter(|p| *p == c).count()
    }

    #[test]
    fn plot_decodes_with_curve_points_and_labels() {
        let train: Vec<f64> = (0..50)
            .map(|k| 3.0 * (-(k as f64) / 15.0).exp() + 0.5)
            .collect();
        let eval = [(0, 3.6), (25, 1.2), (50, 0.8)];
        let dir = std::env::temp_dir().join(format!("huarizo-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("loss.png");
        write_loss_plot(&path, &train, &eval).unwrap();
        let (w, h, rgb) = decode(&std::fs::read(&path).unwrap());
        assert_eq!((w, h), (WIDTH, HEIGHT));
        // The line spans the plot from left to right.
        assert!(
            count(&rgb, TRAIN_COLOR) > 600,
            "{}",
            count(&rgb, TRAIN_COLOR)
        );
        let cols = |c: [u8; 3]| {
            let mut xs: Vec<usize> = rgb
                .chunks_exact(3)
                .enumerate()
                .filter(|(_, p)| *p == c)
                .map(|(i, _)| i % w as usize)
                .collect();
            xs.sort();
            xs.dedup();
            xs
        };
        assert!(cols(TRAIN_COLOR).len() > 600);
        // Three eval squares (7×7 each) plus the legend's.
        assert!(count(&rgb, EVAL_COLOR) >= 3 * 49);
        // Tick labels: black pixels left of the y axis.
        let black_left = rgb
            .chunks_exact(3)
            .enumerate()
            .filter(|(i, p)| *p == AXIS_COLOR && (i % w as usize) < LEFT as usize - 8)
            .count();
        assert!(black_left > 100, "{black_left}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flat_and_empty_curves_still_plot() {
        let (w, h, _) = decode(&render_loss_plot(&[1.0; 3], &[]).unwrap());
        assert_eq!((w, h), (WIDTH, HEIGHT));
        decode(&render_loss_plot(&[], &[]).unwrap());
        decode(&render_loss_plot(&[f64::NAN, 2.0], &[(0, f64::INFINITY)]).unwrap());
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(10.0, 5), 2.0);
        assert_eq!(nice_step(3.0, 5), 1.0);
        assert!((nice_step(0.3, 5) - 0.1).abs() < 1e-12);
        assert_eq!(nice_step(1000.0, 8), 200.0);
    }
}
