//! Loss curves as a self-contained SVG: axes with "nice" ticks (1, 2, 5 × 10^k), the training
//! and held-out series as polylines, a legend. No plotting crate, no fonts, no scripts.

use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 440.0;
/// Plot area: left, right, top, bottom edges in SVG units.
const L: f64 = 70.0;
const R: f64 = W - 20.0;
const T: f64 = 40.0;
const B: f64 = H - 50.0;
const TRAIN_COLOR: &str = "#1f77b4";
const HELDOUT_COLOR: &str = "#ff7f0e";

/// Escape text for XML character data and attribute values.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // XML 1.0 forbids most control characters even when escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// An axis range widened to multiples of a nice step, and its ticks.
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    decimals: usize,
}

fn axis(mut lo: f64, mut hi: f64) -> Axis {
    if hi - lo < 1e-12 * hi.abs().max(1.0) {
        // One value: centre it in a small range.
        let pad = (lo.abs() * 0.05).max(0.5);
        lo -= pad;
        hi += pad;
    }
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag);
    if !(step.is_finite() && step > 0.0) {
        return Axis {
            lo,
            hi,
            ticks: vec![lo, hi],
            decimals: 3,
        };
    }
    let (a, b) = ((lo / step).floor(), (hi / step).ceil());
    let n = ((b - a) as usize).min(20);
    Axis {
        lo: a * step,
        hi: b * step,
        ticks: (0..=n).map(|i| (a + i as f64) * step).collect(),
        decimals: if step >= 1.0 {
            0
        } else {
            (-step.log10()).ceil() as usize
        },
    }
}

impl Axis {
    fn label(&self, v: f64) -> String {
        let v = if v == 0.0 { 0.0 } else { v }; // no "-0"
        if self.decimals == 0 && v.abs() >= 1e5 {
            format!("{:.0}k", v / 1e3)
        } else {
            format!("{v:.*}", self.decimals)
        }
    }
}

/// Plottable points: finite losses of sane magnitude (beyond 1e300 the range itself overflows).
fn finite(points: &[(u64, f64)]) -> impl Iterator<Item = (f64, f64)> + '_ {
    points
        .iter()
        .filter(|p| p.1.abs() <= 1e300)
        .map(|&(x, y)| (x as f64, y))
}

/// Training and held-out loss against step. Non-finite (or beyond ±1e300) losses are skipped;
/// empty input gives the frame with a "no data" note.
pub fn loss_svg(train: &[(u64, f64)], heldout: &[(u64, f64)], title: &str) -> String {
    let all: Vec<(f64, f64)> = finite(train).chain(finite(heldout)).collect();
    let (xa, ya) = if all.is_empty() {
        (axis(0.0, 1.0), axis(0.0, 1.0))
    } else {
        let fold = |f: fn(&(f64, f64)) -> f64| {
            all.iter()
                .map(f)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                    (a.min(v), b.max(v))
                })
        };
        let (x0, x1) = fold(|p| p.0);
        let (y0, y1) = fold(|p| p.1);
        (axis(x0, x1), axis(y0, y1))
    };
    let px = |x: f64| L + (x - xa.lo) / (xa.hi - xa.lo) * (R - L);
    let py = |y: f64| B - (y - ya.lo) / (ya.hi - ya.lo) * (B - T);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        (L + R) / 2.0,
        escape(title)
    );
    // Grid, ticks and labels.
    for &v in &xa.ticks {
        let x = px(v);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{B}" stroke="#e5e5e5"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            B + 16.0,
            xa.label(v)
        );
    }
    for &v in &ya.ticks {
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{L}" y1="{y:.1}" x2="{R}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            L - 6.0,
            y + 4.0,
            ya.label(v)
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{L}" y="{T}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        R - L,
        B - T
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">step</text>"#,
        (L + R) / 2.0,
        H - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{0}" text-anchor="middle" transform="rotate(-90 16 {0})">loss (nats/token)</text>"#,
        (T + B) / 2.0
    );

    // Series: a polyline each; held-out points (few, periodic) also get markers, as does any
    // series of one point, which a polyline alone would not show.
    for (class, pts, color) in [
        ("train", train, TRAIN_COLOR),
        ("heldout", heldout, HELDOUT_COLOR),
    ] {
        let xy: Vec<(f64, f64)> = finite(pts).map(|(x, y)| (px(x), py(y))).collect();
        let coords: Vec<String> = xy.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = writeln!(
            s,
            r#"<polyline class="{class}" fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            coords.join(" ")
        );
        if class == "heldout" || xy.len() == 1 {
            for (x, y) in &xy {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{color}"/>"#
                );
            }
        }
    }
    if all.is_empty() {
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#888">no data</text>"##,
            (L + R) / 2.0,
            (T + B) / 2.0
        );
    }

    // Legend, top right inside the plot, on a backing so curves do not run through it.
    let _ = writeln!(
        s,
        r#"<rect x="{}" y="{}" width="94" height="40" fill="white" fill-opacity="0.85"/>"#,
        R - 106.0,
        T + 4.0
    );
    for (i, (name, color)) in [("train", TRAIN_COLOR), ("held-out", HELDOUT_COLOR)]
        .iter()
        .enumerate()
    {
        let y = T + 16.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{name}</text>"#,
            R - 100.0,
            R - 76.0,
            R - 70.0,
            y + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small XML well-formedness check: balanced tags, quoted attributes, escaped text.
    /// Returns the element names in document order.
    fn check_xml(s: &str) -> Result<Vec<String>, String> {
        let mut stack: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = s;
        let check_text = |t: &str| -> Result<(), String> {
            let mut parts = t.split('&');
            parts.next();
            for p in parts {
                if !["amp;", "lt;", "gt;", "quot;", "apos;"]
                    .iter()
                    .any(|e| p.starts_with(e))
                {
                    return Err(format!("bad entity in {t:?}"));
                }
            }
            if t.contains('>') {
                return Err(format!("raw '>' in {t:?}"));
            }
            Ok(())
        };
        while let Some(open) = rest.find('<') {
            check_text(&rest[..open])?;
            if stack.is_empty() && !rest[..open].trim().is_empty() {
                return Err("text outside the root".into());
            }
            let close = rest[open..].find('>').ok_or("unclosed tag")? + open;
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(n) if n == name.trim() => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
                if stack.is_empty() && !rest.trim().is_empty() {
                    return Err("content after the root".into());
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name: String = body
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if name.is_empty() {
                return Err(format!("bad tag <{tag}>"));
            }
            if stack.is_empty() && !names.is_empty() {
                return Err("two roots".into());
            }
            // Attributes: name="value" pairs, values without '<' or '"'.
            let mut attrs = body[name.len()..].trim();
            while !attrs.is_empty() {
                let eq = attrs
                    .find("=\"")
                    .ok_or(format!("bad attribute in <{tag}>"))?;
                let key = &attrs[..eq];
                if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err(format!("bad attribute name {key:?}"));
                }
                let end = attrs[eq + 2..].find('"').ok_or("unterminated value")? + eq + 2;
                check_text(&attrs[eq + 2..end])?;
                attrs = attrs[end + 1..].trim_start();
            }
            names.push(name.clone());
            if !self_closing {
                stack.push(name);
            }
        }
        if !stack.is_empty() || !rest.trim().is_empty() {
            return Err(format!("unclosed {stack:?}"));
        }
        Ok(names)
    }

    /// The points attribute of the polyline with the given class.
    fn polyline(svg: &str, class: &str) -> Vec<(f64, f64)> {
        let start = svg
            .find(&format!(r#"<polyline class="{class}""#))
            .expect(class);
        let line = &svg[start..svg[start..].find("/>").unwrap() + start];
        let p = line.find("points=\"").unwrap() + 8;
        let pts = &line[p..line[p..].find('"').unwrap() + p];
        pts.split_whitespace()
            .map(|xy| {
                let (x, y) = xy.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn curves_are_well_formed_and_placed() {
        let train: Vec<(u64, f64)> = (0..=100)
            .map(|i| (i * 10, 5.0 / (1.0 + i as f64 * 0.1) + 1.0))
            .collect();
        let held = [(0, 6.1), (500, 2.4), (1000, 1.9)];
        let svg = loss_svg(&train, &held, "tiny <model> & friends");
        let names = check_xml(&svg).unwrap();
        assert_eq!(names[0], "svg");
        assert_eq!(names.iter().filter(|n| *n == "polyline").count(), 2);
        assert!(svg.contains("tiny &lt;model&gt; &amp; friends"));
        assert!(svg.contains(">train<") && svg.contains(">held-out<"));

        let t = polyline(&svg, "train");
        let h = polyline(&svg, "heldout");
        assert_eq!((t.len(), h.len()), (101, 3));
        // Inside the frame; x increases with step; lower loss is lower on the page (larger y).
        for &(x, y) in t.iter().chain(&h) {
            assert!((L..=R).contains(&x) && (T..=B).contains(&y), "{x},{y}");
        }
        assert!(t.windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 >= w[0].1));
        // Steps 0..1000 give nice ticks 0, 200, ..., 1000: the ends sit on the frame edges.
        assert!((t[0].0 - L).abs() < 0.1 && (t[100].0 - R).abs() < 0.1);
        assert!((h[1].0 - (L + R) / 2.0).abs() < 0.1);
        // Equal losses map to equal heights across series: 6.1 is the top of the data.
        assert!(h[0].1 < t[0].1);
        for v in ["0", "200", "1000"] {
            assert!(svg.contains(&format!(">{v}</text>")), "tick {v}");
        }
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        for (train, held) in [
            (vec![], vec![]),
            (vec![(5, 2.0)], vec![]),
            (vec![], vec![(5, 2.0)]),
            (
                vec![(0, f64::NAN), (1, f64::INFINITY)],
                vec![(2, f64::NEG_INFINITY)],
            ),
            (
                vec![(0, 3.0), (1, f64::NAN), (2, 2.0)],
                vec![(0, 3.0), (0, 3.0)],
            ),
            (vec![(0, 1e300), (u64::MAX, -1e300)], vec![(7, 0.0)]),
            (vec![(0, f64::MAX), (1, -f64::MAX), (2, 1.0)], vec![]),
            (vec![(3, 1.0), (3, 1.0)], vec![]),
        ] {
            let svg = loss_svg(&train, &held, "");
            let names = check_xml(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
            assert_eq!(names.iter().filter(|n| *n == "polyline").count(), 2);
            let finite_train = train.iter().filter(|p| p.1.abs() <= 1e300).count();
            assert_eq!(polyline(&svg, "train").len(), finite_train);
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
        let empty = loss_svg(&[], &[], "x");
        assert!(empty.contains("no data"));
        // One point: drawn as a marker, centred.
        let one = loss_svg(&[(5, 2.0)], &[], "x");
        let p = polyline(&one, "train")[0];
        assert!((p.0 - (L + R) / 2.0).abs() < 0.1 && (p.1 - (T + B) / 2.0).abs() < 0.1);
        assert!(one.contains("<circle"));
    }

    #[test]
    fn the_checker_rejects_broken_xml() {
        for bad in [
            "<svg><g></svg>",
            "<svg>a & b</svg>",
            "<svg x=1/>",
            "<svg></svg><svg></svg>",
            "<svg><g></g>",
            "<svg>",
        ] {
            assert!(check_xml(bad).is_err(), "{bad}");
        }
        assert!(check_xml(r#"<svg a="1"><g/>t &amp; u</svg>"#).is_ok());
    }
}
