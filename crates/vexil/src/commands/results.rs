//! `vexil results KEY`: an experiment's results (SPEC 6) from a running server, as a readable
//! table, or as the API's JSON document with `--json`. Results need the server's event pipeline,
//! so this command always goes through `--server` (or `VEXIL_URL`) with a server or admin key.

use super::target::{block_on, print_json};
use super::Outcome;
use serde_json::Value;
use std::fmt::Write;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The experiment's key.
    key: String,
    /// Base URL of a running server, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "VEXIL_URL")]
    server: String,
    /// A server or admin key.
    #[arg(long = "key", env = "VEXIL_KEY", hide_env_values = true)]
    api_key: String,
    /// Analyse with this method for this answer: frequentist, sequential or bayesian.
    #[arg(long)]
    method: Option<String>,
    /// Correct with this method for this answer: holm, bh or none.
    #[arg(long)]
    correction: Option<String>,
    /// Print the results document as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Outcome {
    block_on(async move {
        let mut query: Vec<(&str, &str)> = Vec::new();
        query.extend(args.method.as_deref().map(|m| ("method", m)));
        query.extend(args.correction.as_deref().map(|c| ("correction", c)));
        let base = args.server.trim_end_matches('/');
        let response = reqwest::Client::new()
            .get(format!("{base}/v1/experiments/{}/results", args.key))
            .query(&query)
            .bearer_auth(&args.api_key)
            .send()
            .await
            .map_err(|e| format!("cannot reach {base}: {e}"))?;
        let status = response.status();
        let document: Value = response.json().await.map_err(|e| format!("the server's answer is not JSON: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "the server answered {status}: {}",
                document["error"]["message"].as_str().unwrap_or("(no message)")
            ));
        }
        if args.json {
            return print_json(&document);
        }
        super::print_text(&table(&document));
        Ok(ExitCode::SUCCESS)
    })
}

fn percent(v: &Value) -> String {
    v.as_f64().map_or_else(|| "–".into(), |x| format!("{:+.2} %", x * 100.0))
}

fn number(v: &Value, digits: usize) -> String {
    v.as_f64().map_or_else(|| "–".into(), |x| format!("{x:.digits$}"))
}

/// The results document as a terminal table: one block per metric, one row per variant.
fn table(doc: &Value) -> String {
    let mut out = String::new();
    let bayesian = doc["method"] == "bayesian";
    let _ = writeln!(
        out,
        "{}: {}, {} analysis, {} correction; SRM {} (p = {})",
        doc["experiment_key"].as_str().unwrap_or(""),
        doc["status"].as_str().unwrap_or(""),
        doc["method"].as_str().unwrap_or(""),
        doc["correction"].as_str().unwrap_or(""),
        if doc["srm"]["ok"] == true { "ok" } else { "MISMATCH" },
        number(&doc["srm"]["p_value"], 4),
    );
    let last = if bayesian { "chance to win" } else { "p (adjusted)" };
    let _ = writeln!(
        out,
        "\n{:<28} {:<14} {:>9} {:>12} {:>10} {:>22} {:>14}",
        "metric", "variant", "users", "mean", "lift", "interval", last
    );
    for metric in doc["metrics"].as_array().into_iter().flatten() {
        let name = format!("{} ({})", metric["key"].as_str().unwrap_or(""), metric["role"].as_str().unwrap_or(""));
        for (i, v) in metric["variants"].as_array().into_iter().flatten().enumerate() {
            let relative = &v["relative"];
            let interval = match relative["ci"].as_array() {
                Some(ci) if ci.len() == 2 => format!("[{}, {}]", percent(&ci[0]), percent(&ci[1])),
                _ => String::new(),
            };
            let verdict = if i == 0 {
                String::new()
            } else if bayesian {
                number(&v["chance_to_win"], 3)
            } else {
                let mark = if v["significant"] == true { " *" } else { "" };
                format!("{}{mark}", number(&v["p_value_adjusted"], 4))
            };
            let _ = writeln!(
                out,
                "{:<28} {:<14} {:>9} {:>12} {:>10} {:>22} {:>14}",
                if i == 0 { name.as_str() } else { "" },
                v["key"].as_str().unwrap_or(""),
                v["users"].as_u64().unwrap_or(0),
                number(&v["mean"], 4),
                if i == 0 { String::new() } else { percent(&relative["effect"]) },
                interval,
                verdict,
            );
        }
    }
    let rec = &doc["recommendation"];
    let variant = rec["variant"].as_str().map(|v| format!(" {v}")).unwrap_or_default();
    let _ = writeln!(out, "\nrecommendation: {}{variant}", rec["decision"].as_str().unwrap_or(""));
    for reason in rec["reasons"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  - {}", reason.as_str().unwrap_or(""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_shows_lift_interval_and_the_decision() {
        let doc = json!({"experiment_key": "checkout", "status": "running", "method": "frequentist", "correction": "holm",
            "srm": {"ok": true, "p_value": 0.41},
            "metrics": [{"key": "purchase_rate", "role": "primary", "variants": [
                {"key": "control", "users": 1000, "mean": 0.1},
                {"key": "treatment", "users": 1000, "mean": 0.13, "significant": false, "p_value_adjusted": 0.0656,
                 "relative": {"effect": 0.3, "ci": [-0.019, 0.619]}}]}],
            "recommendation": {"decision": "keep running", "variant": null, "reasons": ["no significant difference yet"]}});
        let text = table(&doc);
        assert!(
            text.contains("checkout: running, frequentist analysis, holm correction; SRM ok (p = 0.4100)"),
            "{text}"
        );
        assert!(text.contains("+30.00 %"), "{text}");
        assert!(text.contains("[-1.90 %, +61.90 %]"), "{text}");
        assert!(text.contains("0.0656"), "{text}");
        assert!(text.contains("recommendation: keep running\n  - no significant difference yet"), "{text}");
    }
}
