//! A small hand-written SVG bar chart of a run: pass@1, tokens and wall time per
//! configuration, side by side.

use std::fmt::Write as _;

use crate::report::Summary;

/// Width of a panel of up to three bars; more bars widen it.
const PANEL_WIDTH: f64 = 260.0;
const PANEL_HEIGHT: f64 = 220.0;
const TOP: f64 = 60.0;
const BAR_WIDTH: f64 = 50.0;
/// Horizontal room one bar takes: the bar and the gap after it.
const BAR_SLOT: f64 = BAR_WIDTH + 20.0;
/// One colour per configuration slot (five configurations at most).
const COLOURS: [&str; 5] = ["#9aa5b1", "#4c78a8", "#f58518", "#54a24b", "#b279a2"];

/// One panel: a measure, its value per configuration and how a value is written.
struct Panel {
    name: &'static str,
    values: Vec<f64>,
    format: fn(f64) -> String,
}

/// The chart as an SVG document; `title` names the run.
pub fn svg(title: &str, summaries: &[Summary]) -> String {
    let measure = |name, value: fn(&Summary) -> f64, format| Panel {
        name,
        values: summaries.iter().map(value).collect(),
        format,
    };
    let panels = [
        measure("pass@1 (hidden tests)", |s| s.pass_at_1() * 100.0, |v| format!("{v:.1}%")),
        measure("tokens per problem", Summary::tokens_per_problem, |v| format!("{v:.0}")),
        measure("wall seconds per problem", Summary::wall_secs_per_problem, |v| format!("{v:.1}")),
    ];
    let panel_width = PANEL_WIDTH.max(30.0 + BAR_SLOT * summaries.len() as f64);
    let width = panel_width * panels.len() as f64 + 20.0;
    let height = TOP + PANEL_HEIGHT + 40.0 + 18.0 * summaries.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        escape(title)
    );
    for (index, Panel { name, values, format }) in panels.iter().enumerate() {
        let left = 10.0 + panel_width * index as f64;
        let max = values.iter().copied().fold(0.0_f64, f64::max);
        let scale = if index == 0 {
            100.0
        } else if max > 0.0 {
            max
        } else {
            1.0
        };
        let base = TOP + PANEL_HEIGHT;
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-weight=\"bold\">{}</text>\n<line x1=\"{left:.1}\" y1=\"{base:.1}\" x2=\"{:.1}\" y2=\"{base:.1}\" stroke=\"#333\"/>",
            left,
            TOP - 14.0,
            escape(name),
            left + panel_width - 20.0
        );
        for (slot, (value, summary)) in values.iter().zip(summaries).enumerate() {
            // The tallest bar leaves room above it for its value.
            let bar_height = (value / scale * PANEL_HEIGHT * 0.85).clamp(0.0, PANEL_HEIGHT);
            let x = left + 15.0 + slot as f64 * BAR_SLOT;
            let colour = COLOURS[slot % COLOURS.len()];
            let _ = writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{BAR_WIDTH}\" height=\"{bar_height:.1}\" fill=\"{colour}\"/>\n\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">({})</text>",
                base - bar_height,
                x + BAR_WIDTH / 2.0,
                base - bar_height - 5.0,
                escape(&format(*value)),
                x + BAR_WIDTH / 2.0,
                base + 16.0,
                summary.config.letter(),
            );
        }
    }
    for (slot, summary) in summaries.iter().enumerate() {
        let (x, y) = (10.0, TOP + PANEL_HEIGHT + 40.0 + 18.0 * slot as f64);
        let _ = writeln!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\n<text x=\"{:.1}\" y=\"{y:.1}\">({}) {} — {}/{} passed</text>",
            y - 10.0,
            COLOURS[slot % COLOURS.len()],
            x + 18.0,
            summary.config.letter(),
            escape(summary.config.label()),
            summary.passed,
            summary.problems,
        );
    }
    out.push_str("</svg>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::configs::Configuration;

    fn summary(config: Configuration, passed: usize, tokens: i64) -> Summary {
        Summary {
            config,
            problems: 4,
            passed,
            errors: 0,
            prompt_tokens: tokens,
            completion_tokens: 0,
            calls: 4,
            wall: Duration::from_secs(8),
            wall_p50_ms: 2000.0,
            wall_p95_ms: 3000.0,
            server_tested: 0,
            reviews: 0,
            graded_reviews: 0,
            first_answers: 0,
            escalations: 0,
        }
    }

    #[test]
    fn one_bar_per_configuration_per_panel_with_its_value() {
        let summaries = [summary(Configuration::Single, 1, 400), summary(Configuration::Council, 3, 4000)];
        let svg = svg("HumanEval 0..4 <smollm2>", &summaries);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect x=").count(), 3 * 2 + 2, "six bars and two legend keys");
        for label in ["25.0%", "75.0%", ">100<", ">1000<", ">2.0<"] {
            assert!(svg.contains(label), "{label} missing");
        }
        assert!(svg.contains("HumanEval 0..4 &lt;smollm2&gt;"));
        assert!(svg.contains("height=\"187.0\""), "the largest value fills 85% of its panel");
        assert!(svg.contains("width=\"800\""), "three panels of the narrow width");
    }

    #[test]
    fn five_configurations_widen_the_panels_and_keep_their_own_colours() {
        let summaries: Vec<Summary> =
            Configuration::ALL.into_iter().map(|config| summary(config, 2, 1000)).collect();
        let svg = svg("five", &summaries);
        assert!(svg.contains("width=\"1160\""), "panels of 30 + 5 × 70 = 380");
        for colour in COLOURS {
            assert_eq!(svg.matches(colour).count(), 3 + 1, "{colour}: a bar per panel and a legend key");
        }
    }
}
