//! A small RGB raster: filled rectangles, lines, 8x8 bitmap text, PNG
//! output. Enough for labelled charts without a font file.

use crate::error::{Error, Result};

/// An RGB colour.
pub type Rgb = [u8; 3];

/// White.
pub const WHITE: Rgb = [255, 255, 255];
/// Black.
pub const BLACK: Rgb = [0, 0, 0];
/// Mid grey, for grid lines.
pub const GREY: Rgb = [150, 150, 150];
/// Light grey, for backgrounds of bars.
pub const LIGHT_GREY: Rgb = [225, 225, 225];

/// Side of one glyph cell in pixels at scale 1.
pub const GLYPH_PX: usize = 8;

/// An RGB image being drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canvas {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height * width * 3` bytes, row-major, row 0 at the top.
    pub rgb: Vec<u8>,
}

impl Canvas {
    /// A canvas filled with `background`.
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        let mut rgb = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            rgb.extend_from_slice(&background);
        }
        Canvas { width, height, rgb }
    }

    /// Sets one pixel (ignored outside the canvas).
    pub fn put(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    /// The pixel at (x, y).
    pub fn get(&self, x: usize, y: usize) -> Rgb {
        let i = (y * self.width + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Fills the rectangle with corner (x, y) and size w x h (clipped).
    pub fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Rgb) {
        let (x0, y0) = (x.max(0), y.max(0));
        let (x1, y1) = (
            (x + w).min(self.width as i64),
            (y + h).min(self.height as i64),
        );
        for yy in y0..y1 {
            for xx in x0..x1 {
                self.put(xx, yy, c);
            }
        }
    }

    /// Outlines a rectangle one pixel wide.
    pub fn stroke_rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Rgb) {
        self.fill_rect(x, y, w, 1, c);
        self.fill_rect(x, y + h - 1, w, 1, c);
        self.fill_rect(x, y, 1, h, c);
        self.fill_rect(x + w - 1, y, 1, h, c);
    }

    /// A straight line between two points (inclusive), one pixel wide.
    pub fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: Rgb) {
        let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as usize;
        for i in 0..=steps {
            let t = i as f64 / steps as f64;
            self.put(
                (x0 + (x1 - x0) * t).round() as i64,
                (y0 + (y1 - y0) * t).round() as i64,
                c,
            );
        }
    }

    /// Width in pixels of `text` at `scale`.
    pub fn text_width(text: &str, scale: usize) -> usize {
        text.chars().count() * GLYPH_PX * scale
    }

    /// Draws `text` with its top-left corner at (x, y). Characters outside
    /// ASCII are drawn as `?`.
    pub fn text(&mut self, x: i64, y: i64, text: &str, c: Rgb, scale: usize) {
        for (k, ch) in text.chars().enumerate() {
            let glyph = glyph(ch);
            let gx = x + (k * GLYPH_PX * scale) as i64;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        self.fill_rect(
                            gx + (col * scale) as i64,
                            y + (row * scale) as i64,
                            scale as i64,
                            scale as i64,
                            c,
                        );
                    }
                }
            }
        }
    }

    /// Draws `text` rotated a quarter turn anticlockwise (reading
    /// upwards), its glyphs' top edge at x and the text ending at y.
    pub fn text_up(&mut self, x: i64, y: i64, text: &str, c: Rgb, scale: usize) {
        for (k, ch) in text.chars().enumerate() {
            let glyph = glyph(ch);
            let base_y = y - ((k + 1) * GLYPH_PX * scale) as i64;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        // Glyph (col, row) -> (x + row, base_y + 7 - col).
                        self.fill_rect(
                            x + (row * scale) as i64,
                            base_y + ((7 - col) * scale) as i64,
                            scale as i64,
                            scale as i64,
                            c,
                        );
                    }
                }
            }
        }
    }

    /// Copies `src` (RGB, `w` x `h`) with its top-left corner at (x, y).
    pub fn blit(&mut self, x: i64, y: i64, w: usize, h: usize, src: &[u8]) {
        for yy in 0..h {
            for xx in 0..w {
                let i = (yy * w + xx) * 3;
                self.put(
                    x + xx as i64,
                    y + yy as i64,
                    [src[i], src[i + 1], src[i + 2]],
                );
            }
        }
    }

    /// The canvas as PNG bytes.
    pub fn encode_png(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let err = |e: png::EncodingError| Error::param("plot", e.to_string());
            let mut w = enc.write_header().map_err(err)?;
            w.write_image_data(&self.rgb).map_err(err)?;
        }
        Ok(out)
    }
}

/// The 8x8 bitmap of `ch` (bit `c` of row `r` = pixel at column `c`).
fn glyph(ch: char) -> [u8; 8] {
    use font8x8::UnicodeFonts;
    font8x8::BASIC_FONTS
        .get(ch)
        .or_else(|| font8x8::BASIC_FONTS.get('?'))
        .unwrap_or([0; 8])
}

/// A perceptually ordered dark-to-bright colour map (black, purple, red,
/// orange, pale yellow) for `v` in [0, 1] (clamped).
pub fn heat(v: f32) -> Rgb {
    const STOPS: [(f32, [f32; 3]); 5] = [
        (0.0, [0.0, 0.0, 4.0]),
        (0.25, [80.0, 18.0, 123.0]),
        (0.5, [182.0, 54.0, 121.0]),
        (0.75, [251.0, 136.0, 97.0]),
        (1.0, [252.0, 253.0, 191.0]),
    ];
    let v = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let k = STOPS.iter().position(|s| s.0 >= v).unwrap_or(4).max(1);
    let (a, b) = (STOPS[k - 1], STOPS[k]);
    let t = (v - a.0) / (b.0 - a.0);
    let mix = |i: usize| (a.1[i] + (b.1[i] - a.1[i]) * t).round() as u8;
    [mix(0), mix(1), mix(2)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_marks_pixels_inside_its_box_only() {
        let mut c = Canvas::new(40, 20, WHITE);
        c.text(2, 3, "Hi", BLACK, 1);
        let inked: Vec<(usize, usize)> = (0..20)
            .flat_map(|y| (0..40).map(move |x| (x, y)))
            .filter(|&(x, y)| c.get(x, y) == BLACK)
            .collect();
        assert!(inked.len() > 10);
        assert!(inked
            .iter()
            .all(|&(x, y)| (2..2 + 16).contains(&x) && (3..3 + 8).contains(&y)));
        assert_eq!(Canvas::text_width("Hi", 2), 32);
    }

    #[test]
    fn rotated_text_reads_upwards() {
        let mut flat = Canvas::new(8, 8, WHITE);
        flat.text(0, 0, "L", BLACK, 1);
        let mut up = Canvas::new(8, 8, WHITE);
        up.text_up(0, 8, "L", BLACK, 1);
        for y in 0..8 {
            for x in 0..8 {
                // (col, row) of the flat glyph lands at (row, 7 - col).
                assert_eq!(flat.get(x, y), up.get(y, 7 - x));
            }
        }
    }

    #[test]
    fn heat_runs_dark_to_bright_and_png_decodes() {
        let lum = |c: Rgb| c[0] as u32 + c[1] as u32 + c[2] as u32;
        let mut last = 0;
        for i in 0..=20 {
            let l = lum(heat(i as f32 / 20.0));
            assert!(l >= last, "step {i}");
            last = l;
        }
        assert_eq!(heat(f32::NAN), heat(0.0));
        let mut c = Canvas::new(5, 4, WHITE);
        c.line(0.0, 0.0, 4.0, 3.0, BLACK);
        c.stroke_rect(0, 0, 5, 4, GREY);
        let bytes = c.encode_png().unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (5, 4));
        assert_eq!(&buf[..info.buffer_size()], c.rgb.as_slice());
    }
}
