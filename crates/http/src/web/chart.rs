//! The dashboard's chart: messages accepted per hour, by whether they are sent (awaiting a
//! receipt), delivered or failed, as an SVG drawn on the server. Only numbers and the labels written here go into it, so it needs no escaping
//! and no script.

use std::fmt::Write;

use textgate_core::clock::Millis;
use textgate_core::status::Status;

const HOUR: Millis = 3_600_000;
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 10.0;

/// The three series, in the order they are drawn, with their CSS class.
const SERIES: [(&str, &str); 3] = [
    ("sent", "s-sent"),
    ("delivered", "s-delivered"),
    ("failed", "s-failed"),
];

/// Per-hour counts from `since` (rounded down to an hour) to `now`, in the series above.
pub fn buckets(rows: &[(Millis, Status, i64)], since: Millis, now: Millis) -> Vec<[i64; 3]> {
    let first = since.div_euclid(HOUR);
    let hours = (now.div_euclid(HOUR) - first + 1).clamp(1, 24 * 31) as usize;
    let mut out = vec![[0i64; 3]; hours];
    for &(hour, status, n) in rows {
        let i = hour.div_euclid(HOUR) - first;
        let Some(b) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) else {
            continue;
        };
        let series = match status {
            Status::Sent => 0,
            Status::Delivered => 1,
            Status::Undelivered | Status::Failed | Status::Expired => 2,
            _ => continue,
        };
        b[series] += n;
    }
    out
}

/// The chart of `buckets` (the first starting at the hour of `since`), with an accessible
/// title and a table-like description for screen readers.
pub fn svg(buckets: &[[i64; 3]], since: Millis) -> String {
    let max = buckets
        .iter()
        .flat_map(|b| b.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = nice_ceiling(max);
    let plot_w = WIDTH - LEFT - 8.0;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let step = plot_w / buckets.len().max(1) as f64;
    let totals: Vec<i64> = (0..3).map(|s| buckets.iter().map(|b| b[s]).sum()).collect();
    let mut out = String::with_capacity(8192);
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg"><title id="chart-title">Messages per hour</title><desc id="chart-desc">In this period: {} sent, {} delivered, {} failed.</desc>"#,
        totals[0], totals[1], totals[2]
    );
    // Grid lines and their labels: 0, half, the top.
    for frac in [0.0, 0.5, 1.0] {
        let y = TOP + plot_h * (1.0 - frac);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            WIDTH - 8.0,
            LEFT - 6.0,
            y + 4.0,
            (scale as f64 * frac).round() as i64
        );
    }
    // Three bars per hour, side by side.
    let bar = (step / 3.0 - 1.0).max(1.0);
    for (i, b) in buckets.iter().enumerate() {
        for (s, (_, class)) in SERIES.iter().enumerate() {
            if b[s] == 0 {
                continue;
            }
            let h = plot_h * b[s] as f64 / scale as f64;
            let x = LEFT + i as f64 * step + s as f64 * (bar + 1.0);
            let _ = write!(
                out,
                r#"<rect class="{class}" x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{h:.1}"><title>{}: {}</title></rect>"#,
                TOP + plot_h - h,
                hour_label(since, i),
                b[s]
            );
        }
    }
    // Hour labels, at most about twelve.
    let every = buckets.len().div_ceil(12).max(1);
    for i in (0..buckets.len()).step_by(every) {
        let _ = write!(
            out,
            r#"<text class="axis" x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + i as f64 * step,
            HEIGHT - 6.0,
            short_label(since, i, buckets.len() > 48)
        );
    }
    out.push_str("</svg>");
    out
}

/// 2, 4 or 10 times a power of ten, at least `n`: even, so that the middle line's label is
/// a whole number.
fn nice_ceiling(n: i64) -> i64 {
    let mut p = 1i64;
    loop {
        for m in [2, 4, 10] {
            if m * p >= n {
                return m * p;
            }
        }
        p = p.saturating_mul(10);
    }
}

fn hour_label(since: Millis, i: usize) -> String {
    let at = since.div_euclid(HOUR) * HOUR + i as Millis * HOUR;
    let t = textgate_core::clock::format_rfc3339(at);
    // 2030-01-01T12:00:00Z → 2030-01-01 12:00 UTC
    format!(
        "{} {} UTC",
        &t[..10.min(t.len())],
        t.get(11..16).unwrap_or("")
    )
}

fn short_label(since: Millis, i: usize, days: bool) -> String {
    let at = since.div_euclid(HOUR) * HOUR + i as Millis * HOUR;
    let t = textgate_core::clock::format_rfc3339(at);
    if days {
        t.get(5..10).unwrap_or("").to_string()
    } else {
        t.get(11..16).unwrap_or("").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_hour_and_series() {
        let since = 10 * HOUR + 5;
        let rows = [
            (10 * HOUR, Status::Sent, 3),
            (11 * HOUR, Status::Delivered, 2),
            (11 * HOUR, Status::Undelivered, 1),
            (11 * HOUR, Status::Expired, 1),
            (50 * HOUR, Status::Sent, 9),
        ];
        let b = buckets(&rows, since, 12 * HOUR + 1);
        assert_eq!(b, vec![[3, 0, 0], [0, 2, 2], [0, 0, 0]]);
    }

    #[test]
    fn the_chart_says_its_totals_and_scales_to_a_round_number() {
        let s = svg(&[[3, 0, 0], [0, 7, 2]], 0);
        assert!(s.contains("3 sent, 7 delivered, 2 failed"));
        assert!(s.contains(">10</text>"), "the top of the scale: {s}");
        assert_eq!(s.matches("<rect").count(), 3);
        assert_eq!(nice_ceiling(1), 2);
        assert_eq!(nice_ceiling(3), 4);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(501), 1000);
    }
}
