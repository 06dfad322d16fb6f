//! An experiment's results page: with events sent through the events API by a server key (a
//! deliberately skewed split over two days), a viewer sees one forest plot row per treatment
//! and metric, the cumulative exposure series with one point per day, the SRM warning in words
//! and the recommendation with its reasons; plans with the power calculator; and finds no
//! write control.

use crate::browser::{create_user, password, Browser};
use crate::harness::{eventually, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Exposures per day: 150 to control and 100 to treatment where the weights say 50/50.
const SKEWED: [(&str, usize); 2] = [("control", 150), ("treatment", 100)];

#[tokio::test]
async fn results_show_a_forest_plot_per_metric_the_daily_series_and_the_srm_warning() {
    let server = Server::start().await;
    create_user(&server, "vera", "viewer", Value::Null).await;
    server
        .create(
            "experiments",
            json!({"key": "checkout_redesign",
                   "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
                   "metrics": [{"key": "purchase_rate", "kind": "conversion", "event": "purchase", "role": "primary"},
                               {"key": "revenue", "kind": "sum", "event": "purchase"}]}),
        )
        .await;
    let (status, body) = server.call(Method::POST, "/v1/admin/experiments/checkout_redesign/start", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Two whole days ago and one: two days in the series whatever the time of day now.
    let now = chrono::Utc::now();
    let mut events = Vec::new();
    for days_ago in [2, 1] {
        let exposed = now - chrono::Duration::days(days_ago);
        for (variant, users) in SKEWED {
            for i in 0..users {
                let user = format!("{variant}_{days_ago}_{i}");
                events.push(json!({"event": "exposure", "type": "exposure", "user_id": user,
                    "experiment_key": "checkout_redesign", "variant": variant, "timestamp": exposed.to_rfc3339()}));
                if i % 4 == 0 {
                    let bought = exposed + chrono::Duration::minutes(5);
                    events.push(json!({"event": "purchase", "user_id": user, "value": 20 + i % 7,
                                       "timestamp": bought.to_rfc3339()}));
                }
            }
        }
    }
    let server_key = server.create_key("server").await;
    let (status, answer) = Server::send(server.with_key(Method::POST, "/v1/events", &server_key).json(&events)).await;
    assert_eq!((status, answer["rejected"].clone()), (StatusCode::OK, json!([])), "{answer}");
    eventually("the results count every exposed user", || async {
        let (_, results) = server.call(Method::GET, "/v1/experiments/checkout_redesign/results", None).await;
        (results["variants"][0]["users"] == 300 && results["variants"][1]["users"] == 200).then_some(())
    })
    .await;

    let Some(browser) = Browser::open(&server, "experiment_results").await else { return };
    browser.sign_in("vera", &password("vera")).await;
    browser.goto("/#/experiments/checkout_redesign").await;
    let warning = browser.wait_text("#srm", "sample ratio mismatch").await;
    assert!(warning.contains("300 / 200") && warning.contains("50.0 % / 50.0 %"), "{warning}");
    let recommendation = browser.wait_text("#recommendation", "stop").await;
    assert!(recommendation.contains("sample ratio mismatch"), "the reasons are listed: {recommendation}");

    let metrics = browser
        .script(
            "return [...document.querySelectorAll('article.metric')].map((m) => ({
             metric: m.dataset.metric,
             rows: [...m.querySelectorAll('svg.forest .forest-row')].map((r) => r.textContent)}))",
        )
        .await;
    let metrics = metrics.as_array().unwrap();
    let keys: Vec<&str> = metrics.iter().map(|m| m["metric"].as_str().unwrap()).collect();
    assert_eq!(keys, ["purchase_rate", "revenue"]);
    for metric in metrics {
        let rows = metric["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "one treatment against the control: {metric}");
        let row = rows[0].as_str().unwrap();
        assert!(row.starts_with("treatment") && row.contains(" %") && row.contains('['), "{row}");
    }
    // The page as it opens: the README shows it (docs/images/console-experiment-results.png).
    browser.screenshot("experiment_results_summary").await;
    let series = browser.find("#exposure-series").await;
    assert_eq!(series.attr("data-days").await.unwrap().as_deref(), Some("2"));
    let lines = browser.script("return document.querySelectorAll('#exposure-series path.series').length").await;
    assert_eq!(lines, 2, "one cumulative line per variant");
    let caption = browser.wait_text("#exposure-series figcaption", "control 300").await;
    assert!(caption.contains("treatment 200"), "{caption}");

    browser.fill("#power-form input[name=mde]", "10").await;
    browser.click("#power-form button[type=submit]").await;
    let plan = browser.wait_text("#power-answer", "users per variant").await;
    assert!(plan.contains("+10.0 %"), "{plan}");

    assert!(!browser.exists("#edit-experiment").await, "a viewer has no edit link");
    assert!(!browser.exists("button[data-action]").await, "a viewer has no lifecycle buttons");
    browser.finish().await;
}

#[tokio::test]
async fn an_editor_creates_an_experiment_fixing_the_field_the_server_names_then_starts_it() {
    let server = Server::start().await;
    create_user(&server, "erin", "editor", Value::Null).await;
    let Some(browser) = Browser::open(&server, "experiment_create").await else { return };
    browser.sign_in("erin", &password("erin")).await;
    browser.goto("/#/experiments").await;
    browser.click("#new-experiment").await;
    browser.fill("#experiment-form input[name=key]", "Signup Flow").await;
    browser.fill("#experiment-form input[name='metrics.0.key']", "signups").await;
    browser.fill("#experiment-form input[name='metrics.0.event']", "signup").await;
    browser.click("#experiment-form button[type=submit]").await;
    let error = browser.wait_shown("#experiment-form [data-path=key] .field-error").await;
    assert!(error.contains("must match"), "the key's error at the key: {error}");

    browser.fill("#experiment-form input[name=key]", "signup_flow").await;
    browser.click("#experiment-form button[type=submit]").await;
    browser.click("button[data-action=start]").await;
    browser.wait_text(".page-head", "running").await;
    let (_, stored) = server.call(Method::GET, "/v1/admin/experiments/signup_flow", None).await;
    assert_eq!((stored["status"].as_str(), &stored["metrics"][0]["event"]), (Some("running"), &json!("signup")));
    let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=experiment&key=signup_flow", None).await;
    assert_eq!(audit["records"][0]["actor"], "user:erin", "{audit}");
    browser.finish().await;
}
