//! The report as one self-contained HTML page: the verdict, every evidence layer as a
//! table, and the per-layer similarity as an inline SVG plot.

use crate::architecture::FieldStatus;
use crate::report::Report;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One plotted series: name, colour, values per layer (NaN = no point).
struct Series<'a> {
    name: &'a str,
    colour: &'a str,
    values: Vec<f64>,
}

/// A line plot of similarity (−0.2…1) against layer, with the null band shaded.
fn plot(series: &[Series], band: Option<(f64, f64)>) -> String {
    let (w, h, left, right, top, bottom) = (760.0, 344.0, 56.0, 20.0, 16.0, 68.0);
    let n = series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let (lo, hi) = (-0.2f64, 1.0f64);
    let x = |i: usize| left + (w - left - right) * i as f64 / (n - 1) as f64;
    let y = |v: f64| top + (h - top - bottom) * (hi - v.clamp(lo, hi)) / (hi - lo);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="similarity-plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="similarity per layer">"#
    );
    if let Some((b_lo, b_hi)) = band {
        let _ = write!(
            svg,
            r##"<rect x="{left}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#ddd"><title>random layer pairings (mean ± 2 sd)</title></rect>"##,
            y(b_hi),
            w - left - right,
            (y(b_lo) - y(b_hi)).max(1.0)
        );
    }
    for t in [-0.2, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0] {
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#bbb" stroke-width="0.5"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{t:.1}</text>"##,
            w - right,
            y(t),
            y(t),
            left - 6.0,
            y(t) + 4.0
        );
    }
    let step = (n / 10).max(1);
    for i in (0..n).step_by(step) {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{i}</text>"#,
            x(i),
            h - bottom + 16.0
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">layer</text>"#,
        (left + w - right) / 2.0,
        h - bottom + 32.0
    );
    for (k, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            s.colour,
            points.join(" ")
        );
        for (i, v) in s.values.iter().enumerate().filter(|(_, v)| v.is_finite()) {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"><title>{} layer {i}: {v:.4}</title></circle>"#,
                x(i),
                y(*v),
                s.colour,
                esc(s.name)
            );
        }
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="12" height="3" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            left + 220.0 * k as f64,
            h - 12.0,
            s.colour,
            left + 16.0 + 220.0 * k as f64,
            h - 7.0,
            esc(s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Renders `r` as a page.
pub fn render(r: &Report) -> String {
    let mut series = Vec::new();
    if let Some(w) = &r.weights {
        series.push(Series {
            name: "weight cosine (direct)",
            colour: "#c0392b",
            values: w.per_layer_cosine.clone(),
        });
    }
    let mut band = None;
    if let Some(inv) = &r.invariants {
        series.push(Series {
            name: "invariant similarity",
            colour: "#2471a3",
            values: inv.per_layer.clone(),
        });
        band = Some((
            inv.null_mean - 2.0 * inv.null_sd,
            inv.null_mean + 2.0 * inv.null_sd,
        ));
    }
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>huarizo lineage: {} vs {}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:980px;margin:24px auto;padding:0 16px;color:#222}}
table{{border-collapse:collapse;margin:8px 0 16px}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:14px}}
.verdict{{font-size:22px;font-weight:600;padding:10px 14px;background:#eef4fb;border-left:6px solid #2471a3}}
.eq{{color:#1e8449}}.ne{{color:#c0392b}}.co{{color:#b9770e}}code{{font-size:13px}}</style></head><body>
<h1>Lineage: <code>{}</code> vs <code>{}</code></h1>"#,
        esc(&r.a.name),
        esc(&r.b.name),
        esc(&r.a.name),
        esc(&r.b.name)
    );
    let _ = write!(
        h,
        "<table><tr><th></th><th>file</th><th>architecture</th><th>weights</th><th>size</th><th>storage</th></tr>"
    );
    for (tag, m) in [("A", &r.a), ("B", &r.b)] {
        let _ = write!(
            h,
            "<tr><td>{tag}</td><td>{}</td><td>{}</td><td>{:.0} M</td><td>{:.0} MB</td><td>{}</td></tr>",
            esc(&m.path),
            esc(&m.architecture),
            m.params as f64 / 1e6,
            m.bytes as f64 / 1e6,
            esc(&m.quantization)
        );
    }
    h.push_str("</table>");
    let _ = write!(
        h,
        r#"<p class="verdict" id="verdict">{} <small>(confidence {:.4})</small></p><ul>"#,
        esc(r.verdict.label),
        r.verdict.confidence
    );
    for e in &r.verdict.evidence {
        let _ = write!(h, "<li>{}</li>", esc(e));
    }
    h.push_str("</ul><h2>Similarity per layer</h2>");
    h.push_str(&plot(&series, band));
    h.push_str(
        "<p>Grey band: invariant similarity of randomly paired layers (mean ± 2 sd), the null.</p>",
    );
    let _ = write!(h, "<h2>1. Architecture</h2><p>{}</p><table><tr><th>field</th><th>A</th><th>B</th><th></th></tr>", esc(&r.architecture.summary));
    for f in &r.architecture.fields {
        let (class, word) = match f.status {
            FieldStatus::Equal => ("eq", "equal"),
            FieldStatus::Compatible => ("co", "compatible"),
            FieldStatus::Different => ("ne", "different"),
        };
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="{class}">{word}</td></tr>"#,
            f.field,
            esc(&f.a),
            esc(&f.b)
        );
    }
    h.push_str("</table>");
    let g = &r.graph;
    let _ = write!(
        h,
        "<h2>2. Tensor graph</h2><p>{} matched by role, shape and order; {} only in A; {} only in B; {} with different shapes.</p>",
        g.matches.len(),
        g.only_a.len(),
        g.only_b.len(),
        g.shape_mismatches
    );
    if !g.renames.is_empty() {
        h.push_str(
            "<table id=\"renames\"><tr><th>name in A</th><th>name in B</th><th>tensors</th></tr>",
        );
        for rn in &g.renames {
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&rn.from),
                esc(&rn.to),
                rn.count
            );
        }
        h.push_str("</table>");
    }
    let t = &r.tokenizer;
    let _ = write!(
        h,
        "<h2>3. Tokenizer</h2><table><tr><th></th><th>A</th><th>B</th></tr><tr><td>kind</td><td>{}</td><td>{}</td></tr><tr><td>vocabulary</td><td>{}</td><td>{}</td></tr>",
        esc(&t.kind_a),
        esc(&t.kind_b),
        t.vocab_a,
        t.vocab_b
    );
    for sp in &t.specials {
        let show = |x: &Option<String>| esc(x.as_deref().unwrap_or("-"));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            sp.kind,
            show(&sp.a),
            show(&sp.b)
        );
    }
    let _ =
        write!(
        h,
        "</table><p>Vocabulary Jaccard {:.3}{}; {} shared tokens, {:.1}% with the same id{}.</p>",
        t.vocab_jaccard,
        t.merges_jaccard.map(|m| format!(", merges Jaccard {m:.3}")).unwrap_or_default(),
        t.shared_tokens,
        100.0 * t.same_id_fraction,
        if t.identical { " (identical tokenizers)" } else { "" }
    );
    h.push_str("<h2>4–5. Weights</h2>");
    if let Some(w) = &r.weights {
        let _ = write!(
            h,
            "<p>{:.1}% of A's weights compared; {} of {} tensors with identical values ({} identical bytes); size-weighted cosine {:.4}; {:.1}% within quantization noise.</p>",
            100.0 * w.compared_fraction,
            w.same_values,
            w.tensors.len(),
            w.same_bytes,
            w.mean_cosine,
            100.0 * w.within_quantization_fraction
        );
        if let Some(s) = &w.shared_embedding_rows {
            let _ = write!(
                h,
                "<p>Embeddings on {} shared-token rows: mean cosine {:.4}.</p>",
                s.rows, s.mean_cosine
            );
        }
    } else {
        h.push_str("<p>No tensor pair has equal shapes.</p>");
    }
    match (&r.invariants, &r.invariants_note) {
        (Some(inv), _) => {
            let _ = write!(
                h,
                "<p>Function-invariant products on {} probe words: similarity {:.4}; random layer pairings {:.4} ± {:.4}; z = {:.1}; p = {:.1e}. Against unrelated real models: z = {:.1}, p = {:.1e}.</p><table><tr><th>term</th><th>mean similarity</th></tr>",
                inv.words, inv.similarity, inv.null_mean, inv.null_sd, inv.z, inv.p_value,
                inv.z_unrelated, inv.p_unrelated
            );
            for (term, v) in &inv.per_term {
                let _ = write!(h, "<tr><td>{}</td><td>{v:.4}</td></tr>", esc(term));
            }
            h.push_str("</table>");
        }
        (None, Some(n)) => {
            let _ = write!(h, "<p>Invariants not computed: {}.</p>", esc(n));
        }
        _ => {}
    }
    h.push_str("<h2>6. Behaviour</h2>");
    match (&r.behaviour, &r.behaviour_note) {
        (Some(b), _) => {
            let _ = write!(
                h,
                "<p>{} positions: mean KL(A‖B) {:.5} nats (max {:.4}); top-1 agreement {:.1}%.</p>",
                b.positions,
                b.mean_kl,
                b.max_kl,
                100.0 * b.top1_agreement
            );
        }
        (None, Some(n)) => {
            let _ = write!(h, "<p>Not compared: {}.</p>", esc(n));
        }
        _ => {}
    }
    let _ = writeln!(
        h,
        "<p><small>huarizo lineage, {:.1} s.</small></p></body></html>",
        r.seconds
    );
    h
}
