//! The README's tour, run as written: every `sh` block of "A five-minute tour of the service",
//! in order, in one bash session in an empty directory, with `cargo run --release --` standing
//! for this build's `vexil`. The tour's server listens on a free port instead of 8080 (the tour's
//! URL is rewritten to match), so that the test runs beside others.
//!
//! Under a command, the README shows what it answers in `#` lines, and each block's output must
//! show it too:
//! - a line with JSON (`{` or `"name":`) asks for each `"name": value` it gives (a string,
//!   number, `true`, `false` or `null`) somewhere in the block's output, spacing aside; `"..."`
//!   and `"<...>"` stand for values that differ from run to run;
//! - any other line must appear as it is (trailing spaces aside);
//! - a line in parentheses explains rather than shows, and is not checked.
//!
//! Results are computed from processed events, which trail ingest by moments, so a block that
//! reads them is run again until it shows what the README shows.

use regex::Regex;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

const TOUR_HEADING: &str = "## A five-minute tour of the service";
const TOUR_URL: &str = "http://127.0.0.1:8080";
/// Printed after each block with the block's exit status.
const BLOCK_DONE: &str = "vexil-readme-tour-block-done";
/// Generous: one block assigns 400 users with a curl each, against a debug build.
const BLOCK_PATIENCE: Duration = Duration::from_secs(180);
/// How long a block that reads results may take to show what the README shows.
const RESULTS_PATIENCE: Duration = Duration::from_secs(60);

struct Block {
    script: String,
    expected: Vec<Expected>,
}

#[derive(Debug)]
enum Expected {
    /// `"name":value`, spacing removed.
    Field(String),
    Line(String),
}

static FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#""([A-Za-z_]+)"\s*:\s*("[^"]*"|-?[0-9][0-9.]*|true|false|null)"#).expect("a valid pattern")
});
static COLON_SPACING: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#""\s*:\s*"#).expect("a valid pattern"));

fn tour_blocks(readme: &str) -> Vec<Block> {
    let (_, tour) = readme.split_once(TOUR_HEADING).expect("the README has the tour");
    let tour = tour.split("\n## ").next().unwrap_or(tour);
    tour.split("```sh\n")
        .skip(1)
        .map(|rest| rest.split_once("```").expect("every sh block is closed").0)
        .map(|script| Block { script: script.to_owned(), expected: expected_in(script) })
        .collect()
}

fn expected_in(script: &str) -> Vec<Expected> {
    let mut expected = Vec::new();
    for line in script.lines() {
        let Some(shown) = line.trim_start().strip_prefix('#') else { continue };
        let shown = shown.strip_prefix(' ').unwrap_or(shown).trim_end();
        if shown.trim().is_empty() || shown.starts_with('(') {
            continue;
        }
        if shown.contains('{') || FIELD.is_match(shown) {
            expected.extend(
                FIELD
                    .captures_iter(shown)
                    .filter(|c| !(c[2].starts_with("\"...") || c[2].starts_with("\"<")))
                    .map(|c| Expected::Field(format!("\"{}\":{}", &c[1], &c[2]))),
            );
        } else {
            expected.push(Expected::Line(shown.to_owned()));
        }
    }
    expected
}

/// What `output` lacks of `expected`.
fn missing<'a>(expected: &'a [Expected], output: &str) -> Vec<&'a Expected> {
    let compact = COLON_SPACING.replace_all(output, "\":");
    expected
        .iter()
        .filter(|e| match e {
            Expected::Field(field) => !contains_whole(&compact, field),
            Expected::Line(line) => !output.lines().any(|l| l.trim_end().contains(line.as_str())),
        })
        .collect()
}

/// `field` in `text` and not just the start of a longer value (`"version":1` in `"version":12`).
fn contains_whole(text: &str, field: &str) -> bool {
    text.match_indices(field).any(|(at, _)| {
        text[at + field.len()..].chars().next().is_none_or(|next| !(next.is_ascii_alphanumeric() || next == '.'))
    })
}

/// One bash reading the tour from its standard input; the tour's server is its background job.
struct Session {
    bash: Child,
    /// Closed first when the session ends: bash exits at the end of its input.
    input: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Session {
    fn start(dir: &Path, listen: &str) -> Session {
        let errors = std::fs::File::create(dir.join("stderr.txt")).unwrap();
        let mut bash = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .process_group(0)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("VEXIL_LISTEN", listen)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(errors)
            .spawn()
            .expect("bash runs");
        let input = bash.stdin.take().unwrap();
        let output = BufReader::new(bash.stdout.take().unwrap());
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in output.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut session = Session { bash, input: Some(input), lines };
        // The server is stopped however the test ends: bash exits when its input closes.
        session.send("trap 'kill $(jobs -p) 2> /dev/null; wait' EXIT");
        session
    }

    fn send(&mut self, script: &str) {
        writeln!(self.input.as_mut().expect("open until dropped"), "{script}").expect("bash reads the tour");
    }

    /// Runs `script` and returns its output and exit status.
    fn run(&mut self, script: &str) -> (String, i32) {
        self.send(script);
        self.send(&format!("status=$?; printf '\\n%s %d\\n' {BLOCK_DONE} \"$status\""));
        let deadline = Instant::now() + BLOCK_PATIENCE;
        let mut output = String::new();
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => match line.strip_prefix(BLOCK_DONE) {
                    Some(status) => return (output, status.trim().parse().expect("a status")),
                    None => {
                        output.push_str(&line);
                        output.push('\n');
                    }
                },
                Err(RecvTimeoutError::Timeout) => panic!("no end of the block within {BLOCK_PATIENCE:?}:\n{script}"),
                Err(RecvTimeoutError::Disconnected) => panic!("bash stopped in the block:\n{script}\n{output}"),
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A block may hang: stop bash, the tour's server and whatever else runs, all of them
            // in bash's process group.
            let group = format!("-{}", self.bash.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        }
        self.input.take();
        let _ = self.bash.wait();
    }
}

#[test]
fn the_readme_tour_answers_as_it_shows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = tour_blocks(&readme);
    assert!(blocks.len() >= 10, "the tour has its blocks: {}", blocks.len());
    assert!(blocks[0].script.contains("serve &"), "the tour starts the server first");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("examples")).unwrap();
    std::fs::copy(root.join("examples/flags.yaml"), dir.path().join("examples/flags.yaml")).unwrap();
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let mut session = Session::start(dir.path(), &listen);
    let vexil = env!("CARGO_BIN_EXE_vexil");

    for (n, block) in blocks.iter().enumerate() {
        let script =
            block.script.replace("cargo run --release --", vexil).replace(TOUR_URL, &format!("http://{listen}"));
        let reads_results = script.contains("/results");
        let started = Instant::now();
        loop {
            let (output, status) = session.run(&script);
            let missing = missing(&block.expected, &output);
            if status == 0 && missing.is_empty() {
                break;
            }
            if reads_results && started.elapsed() < RESULTS_PATIENCE {
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            let errors = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap_or_default();
            panic!(
                "tour block {n} (exit status {status}) lacks {missing:?}\n--- block\n{}\n--- output\n{output}\n--- stderr\n{errors}",
                block.script
            );
        }
        if n == 0 {
            session.run(r#"until curl -sf "$VEXIL/ready" > /dev/null; do sleep 0.1; done"#);
        }
    }
}

#[test]
fn tour_expectations_are_read_from_the_comment_lines() {
    let block =
        "curl x\n# 201 {\"key\": \"a\", \"id\": \"...\", \"n\": 1, ...}\n#   - a line\n# (explained)\nrun # inline\n";
    let expected: Vec<String> = expected_in(block).iter().map(|e| format!("{e:?}")).collect();
    assert_eq!(expected, [r#"Field("\"key\":\"a\"")"#, r#"Field("\"n\":1")"#, r#"Line("  - a line")"#]);
    let expected = expected_in(block);
    assert!(missing(&expected, "{\"key\": \"a\", \"n\":1}\n  - a line   \n").is_empty());
    assert_eq!(missing(&expected, "{\"key\":\"a\",\"n\":12}\n  - a line\n").len(), 1, "1 is not 12");
    assert_eq!(missing(&expected, "{\"key\":\"a\",\"n\":1}\n").len(), 1);
}
